//! `vakt report` and `GET /api/v1/reports/summary` over a constructed history whose
//! answers are known: 100 alerts with chosen acknowledge and resolve times, repeats,
//! dropped chatter, in chosen hours; checked number by number, in every format.

use std::process::Output;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Value, json};
use vakt::config::{Config, Overrides};
use vakt_core::alert::{OperatorAction, OperatorRequest};
use vakt_core::{EventInput, Pipeline};
use vakt_store::Store;

const CONFIG: &str = r#"
[server]
write_rate_per_client = 0
[dispatch]
enabled = false

[[rules]]
name = "drop-debug"
when = 'summary.startsWith("DEBUG")'
drop = true

[[rules]]
name = "disk"
when = 'check == "disk" && severity != "ok"'
category = "exception"
actions = ["fix"]

[actions.fix]
type = "exec"
command = ["/bin/true"]
dry_run = true
"#;

fn vakt(args: &[&str]) -> Output {
    crate::harness::vakt_cli(args)
}

fn input(value: Value) -> EventInput {
    EventInput::from_json(0, value).expect("valid event")
}

/// The history: alert i (0..100) opens at t0 + i minutes with 10 problem events (one a
/// second); odd ones are acknowledged (i+1)*10 s after opening; even ones resolve by an
/// `ok` event an hour after opening. 200 DEBUG events are dropped. Services: web for
/// i < 30, db after.
async fn history(dir: &std::path::Path, t0: DateTime<Utc>, pipeline: &Pipeline) -> i64 {
    let store = vakt_store::SqliteStore::open(dir).await.expect("open");
    let mut decided = 0i64;
    let mut ids = Vec::new();
    for i in 0..100i64 {
        let first = t0 + Duration::minutes(i);
        let service = if i < 30 { "web" } else { "db" };
        let batch = (0..10)
            .map(|k| {
                pipeline.prepare(
                    input(json!({"resource": format!("h{i}"), "check": "disk", "summary": "full", "severity": "critical", "service": service})),
                    "test",
                    first + Duration::seconds(k),
                )
            })
            .collect();
        let out = store
            .ingest(pipeline, &Default::default(), batch)
            .await
            .expect("ingest");
        decided += out.iter().map(|o| o.actions.len() as i64).sum::<i64>();
        ids.push(out[0].alert.as_ref().expect("alert").id.clone());
    }
    for i in (0..100i64).step_by(2) {
        let at = t0 + Duration::minutes(i) + Duration::hours(1);
        let out = store
            .ingest(
                pipeline,
                &Default::default(),
                vec![pipeline.prepare(
                    input(json!({"resource": format!("h{i}"), "check": "disk", "summary": "ok", "severity": "ok", "service": if i < 30 { "web" } else { "db" }})),
                    "test",
                    at,
                )],
            )
            .await
            .expect("ingest");
        decided += out.iter().map(|o| o.actions.len() as i64).sum::<i64>();
    }
    let chatter = (0..200)
        .map(|k| {
            pipeline.prepare(
                input(json!({"resource": "app", "check": "log", "summary": "DEBUG tick", "severity": "info"})),
                "test",
                t0 + Duration::seconds(k),
            )
        })
        .collect();
    store
        .ingest(pipeline, &Default::default(), chatter)
        .await
        .expect("ingest");
    for i in (1..100).step_by(2) {
        store
            .operate(
                pipeline,
                &Default::default(),
                &ids[i],
                &OperatorRequest {
                    action: OperatorAction::Ack,
                    by: "alice".into(),
                    comment: None,
                },
            )
            .await
            .expect("ack");
    }
    store.close().await;
    // The acknowledgements at chosen times (the API stamps them with the clock).
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("vakt.db"));
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("connect");
    for i in (1..100usize).step_by(2) {
        sqlx::query("UPDATE alerts SET acknowledged_at = first_seen + $1 WHERE id = $2")
            .bind(i64::try_from(i + 1).expect("small") * 10_000)
            .bind(&ids[i])
            .execute(&mut conn)
            .await
            .expect("update");
    }
    sqlx::Connection::close(conn).await.expect("close");
    decided
}

/// A work directory with `text` as its vakt.toml and the data directory beside it, and the
/// configuration loaded from there.
struct Setup {
    work: tempfile::TempDir,
    config_path: std::path::PathBuf,
    data: std::path::PathBuf,
    config: Config,
}

/// `vakt tune --json` over the last `since` of the store in `data`.
fn tune_json(config_path: &std::path::Path, data: &std::path::Path, since: &str) -> Output {
    vakt(&[
        "tune",
        "--config",
        config_path.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--since",
        since,
        "--json",
    ])
}

fn setup(text: &str) -> Setup {
    let work = tempfile::tempdir().expect("dir");
    let config_path = work.path().join("vakt.toml");
    std::fs::write(&config_path, text).expect("write");
    let data = work.path().join("data");
    let overrides = Overrides {
        listen: None,
        data_dir: Some(data.clone()),
        database_url: None,
    };
    let config = Config::load(Some(&config_path), &overrides).expect("config");
    Setup {
        work,
        config_path,
        data,
        config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constructed_history_reports_its_known_answers() {
    let Setup {
        work,
        config_path,
        data,
        config,
    } = setup(CONFIG);
    // Two days ago at 10:00 UTC.
    let t0 = (Utc::now() - Duration::days(2))
        .duration_trunc(Duration::days(1))
        .expect("day")
        + Duration::hours(10);
    let decided = history(&data, t0, &config.pipeline).await;

    let report = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--config",
            config_path.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        vakt(&args)
    };
    let out = report(&["--since", "30d", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    let h = &r["headline"];
    assert_eq!(h["events"], 1250, "1000 problems, 50 ok, 200 chatter");
    assert_eq!(h["dropped"], 200);
    assert_eq!(h["alerts"], 100);
    assert_eq!(h["actions"], decided);
    assert_eq!(r["previous"]["events"], 0, "nothing in the 30 days before");
    let mut by_severity: std::collections::BTreeMap<String, i64> = Default::default();
    for bucket in r["volume"]["buckets"].as_array().expect("buckets") {
        let mut sum = 0;
        for (severity, n) in bucket["by_severity"].as_object().expect("by severity") {
            *by_severity.entry(severity.clone()).or_default() += n.as_i64().unwrap_or(0);
            sum += n.as_i64().unwrap_or(0);
        }
        assert_eq!(bucket["events"], sum, "{bucket}");
    }
    assert_eq!(
        by_severity,
        [("critical", 1000), ("info", 200), ("ok", 50)]
            .map(|(k, v)| (k.to_owned(), v))
            .into(),
        "every bucket split by severity"
    );
    let f = &r["funnel"];
    assert_eq!(f["kept"], 1050);
    assert_eq!(f["events_per_alert"], 10.5);
    assert_eq!(f["dropped_pct"], 16.0);
    let o = &r["response"]["overall"];
    assert_eq!(o["mtta"]["count"], 50);
    assert_eq!(o["mtta"]["mean"], 510.0, "20, 40, ... 1000 s");
    assert_eq!(o["mtta"]["median"], 500.0);
    assert_eq!(o["mtta"]["p90"], 900.0);
    assert_eq!(o["mttr"]["count"], 50);
    assert_eq!(o["mttr"]["median"], 3600.0);
    assert_eq!(
        r["response"]["acked_within_target_pct"], 90.0,
        "45 of 50 within 15m"
    );
    let services: Vec<(String, u64)> = r["response"]["by_service"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row["key"].as_str().unwrap_or_default().to_owned(),
                row["alerts"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(services, [("db".to_owned(), 70), ("web".to_owned(), 30)]);
    let a = &r["automation"];
    assert_eq!(a["resolved"], 50);
    assert_eq!(a["resolved_before_ack"], 50);
    assert_eq!(
        a["resolved_by_automation"], 50,
        "resolved by events after fix ran"
    );
    // Hours: the problems from 10:00 to 11:39 UTC, the oks an hour later, chatter at 10:0x.
    let hours = r["volume"]["hour_of_day"].as_array().expect("hours");
    let sum: i64 = hours.iter().filter_map(Value::as_i64).sum();
    assert_eq!(sum, 1250);
    assert_eq!(
        hours[10].as_i64().unwrap_or_default()
            + hours[11].as_i64().unwrap_or_default()
            + hours[12].as_i64().unwrap_or_default(),
        1250
    );
    assert_eq!(r["volume"]["bucket"], "day");
    assert_eq!(r["quality"]["noisy_checks"][0], json!(["disk", 1050]));

    // In Tokyo (UTC+9, no daylight saving) the same hours are 19 to 21.
    let out = report(&["--since", "30d", "--tz", "Asia/Tokyo"]);
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    let hours = r["volume"]["hour_of_day"].as_array().expect("hours");
    assert_eq!(hours[10], 0);
    assert!(hours[19].as_i64().unwrap_or_default() > 0);

    // CSV: one long table.
    let out = report(&["--since", "30d", "--format", "csv"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("section,name,key,value,previous\n"),
        "{text}"
    );
    assert!(text.contains("headline,events,,1250,0\n"), "{text}");
    assert!(
        text.contains("response,all_mtta_median_secs,all,500.000,\n"),
        "{text}"
    );

    // HTML: one file, charts as SVG, no script.
    let html_path = work.path().join("report.html");
    let out = report(&[
        "--since",
        "30d",
        "--format",
        "html",
        "--out",
        html_path.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let html = std::fs::read_to_string(&html_path).expect("html");
    assert!(html.contains("<svg") && !html.contains("<script"));
    assert!(html.contains("8m 20s"), "the median time to acknowledge");

    // Wrong arguments say which.
    for (args, says) in [
        (vec!["--since", "3w"], "--since \"3w\": unknown unit"),
        (vec!["--tz", "Mars/Olympus"], "--tz \"Mars/Olympus\""),
        (vec!["--format", "pdf"], "--format: unknown format \"pdf\""),
    ] {
        let out = report(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // The same report over HTTP from a server on the data directory.
    let mut server = crate::harness::TestServer::with_config(Some(CONFIG)).await;
    server.stop().await;
    std::fs::remove_dir_all(server.data_dir()).expect("fresh");
    std::fs::rename(&data, server.data_dir()).expect("move the history");
    server.boot(true, None).await;
    let (status, r) = server.get("/api/v1/reports/summary?since=30d").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["headline"]["events"], 1250);
    assert_eq!(r["response"]["overall"]["mtta"]["median"], 500.0);
    let response = server
        .client
        .get(server.url("/api/v1/reports/summary?since=30d&format=html&tz=Europe/Stockholm"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let (status, body) = server
        .get("/api/v1/reports/summary?since=30d&tz=Nowhere")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("tz \"Nowhere\""),
        "{body}"
    );
}

/// `vakt tune` on the same history plus 20 blips that clear themselves in 30 s and a rule
/// that never matches: exactly those suggestions, each with its evidence and replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_suggests_what_the_history_shows() {
    let Setup {
        work: _work,
        config_path,
        data,
        config,
    } = setup(&format!(
        "{CONFIG}\n[[rules]]\nname = \"never\"\nwhen = 'check == \"no-such-check\"'\nseverity = \"critical\"\n"
    ));
    let t0 = (Utc::now() - Duration::days(2))
        .duration_trunc(Duration::days(1))
        .expect("day")
        + Duration::hours(10);
    history(&data, t0, &config.pipeline).await;
    let store = vakt_store::SqliteStore::open(&data).await.expect("open");
    for i in 0..20 {
        let at = t0 + Duration::minutes(i);
        for (severity, later) in [("major", 0), ("ok", 30)] {
            store
                .ingest(
                    &config.pipeline,
                    &Default::default(),
                    vec![config.pipeline.prepare(
                        input(json!({"resource": format!("b{i}"), "check": "blip", "summary": "s", "severity": severity})),
                        "test",
                        at + Duration::seconds(later),
                    )],
                )
                .await
                .expect("ingest");
        }
    }
    store.close().await;
    let out = tune_json(&config_path, &data, "7d");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let advice: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(advice["events"], 1290);
    assert_eq!(advice["alerts"], 120);
    let found: Vec<(String, String)> = advice["suggestions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or_default().to_owned(),
                s["subject"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("matches-most".to_owned(), "rule \"disk\"".to_owned()),
            ("never-matched".to_owned(), "rule \"never\"".to_owned()),
            ("self-resolving".to_owned(), "check \"blip\"".to_owned()),
        ],
        "{advice}"
    );
    let blip = &advice["suggestions"][2];
    assert!(
        blip["evidence"]
            .as_str()
            .unwrap_or_default()
            .starts_with("20 of its 20 alerts resolved by themselves"),
        "{blip}"
    );
    assert!(
        blip["replay"]
            .as_str()
            .unwrap_or_default()
            .starts_with("vakt replay --base "),
        "{blip}"
    );
}

const PAGING: &str = r#"
[server]
write_rate_per_client = 0
[dispatch]
enabled = false
[alerts]
reopen_window_secs = 600

[[users]]
id = "alice"
phone_webhook = "http://127.0.0.1:9/alice"
[[users]]
id = "bob"
phone_webhook = "http://127.0.0.1:9/bob"

[[escalation_policies]]
name = "ops"
[[escalation_policies.steps]]
notify = [{ user = "alice" }]
[[escalation_policies.steps]]
after_secs = 300
notify = [{ user = "bob" }]

[[rules]]
name = "page"
when = 'check == "down" && severity == "critical"'
escalate = "ops"
"#;

/// A page of `policy` step `step` for `user`, decided at `at`, as the escalation loop
/// writes it.
fn page(
    alert_id: &str,
    user: &str,
    step: u32,
    at: DateTime<Utc>,
) -> vakt_core::pipeline::DecidedAction {
    use vakt_core::escalation::{Page, Via};
    vakt_core::pipeline::DecidedAction {
        id: vakt_store::new_id(),
        action: "escalation:ops".into(),
        kind: "notify",
        alert_id: alert_id.to_owned(),
        event_id: String::new(),
        purpose: vakt_core::pipeline::Purpose::Escalation,
        reason: format!("escalation policy ops step {step}"),
        suppressed_by: None,
        group_key: None,
        decided_at: at,
        target: Some(Box::new(Page {
            policy: "ops".into(),
            step,
            round: 0,
            user: Some(user.to_owned()),
            via: Via::Phone {
                url: "http://127.0.0.1:9/".into(),
            },
        })),
    }
}

/// Pages at chosen local hours, acknowledgements after chosen steps, an alert that
/// re-opens twice, a source that went quiet and a missing heartbeat: the report's
/// escalation, interruption and quality parts, and tune's early-escalation suggestion,
/// each with its known answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_reopens_and_silence_report_their_known_answers() {
    use chrono::Datelike;
    use vakt_core::escalation::Position;
    let Setup {
        work: _work,
        config_path,
        data,
        config,
    } = setup(PAGING);
    let p = &config.pipeline;
    // The Monday at least 8 days back, 00:00 UTC: the report covers its week.
    let mut monday = (Utc::now() - Duration::days(8))
        .duration_trunc(Duration::days(1))
        .expect("day");
    while monday.weekday() != chrono::Weekday::Mon {
        monday -= Duration::days(1);
    }
    let store = vakt_store::SqliteStore::open(&data).await.expect("open");
    let ingest = async |events: Vec<(Value, DateTime<Utc>)>| {
        let batch = events
            .into_iter()
            .map(|(e, at)| p.prepare(input(e), "test", at))
            .collect();
        store
            .ingest(p, &Default::default(), batch)
            .await
            .expect("ingest")
    };
    // A source heard only in the week before.
    ingest(vec![(
        json!({"source": "old-agent", "resource": "x", "check": "c", "summary": "s", "severity": "warning"}),
        monday - Duration::days(3),
    )])
    .await;
    // Ten paging alerts, Monday 00:30.
    let out = ingest(
        (0..10)
            .map(|i| {
                (
                    json!({"resource": format!("h{i}"), "check": "down", "summary": "down", "severity": "critical"}),
                    monday + Duration::minutes(30),
                )
            })
            .collect(),
    )
    .await;
    let ids: Vec<String> = out
        .iter()
        .map(|o| o.alert.as_ref().expect("alert").id.clone())
        .collect();
    // Step 1 pages alice: 0-3 Monday 10:00 (business), 4-6 Monday 23:00 (sleep), 7-9
    // Saturday 12:00 (off). Step 2 pages bob ten minutes later for 0-4.
    let step1 = |i: usize| match i {
        0..4 => monday + Duration::hours(10),
        4..7 => monday + Duration::hours(23),
        _ => monday + Duration::days(5) + Duration::hours(12),
    };
    let far = Utc::now() + Duration::days(1);
    let claimed = store.claim_escalations(far, far, 100).await.expect("claim");
    assert_eq!(claimed.len(), 10);
    for escalation in claimed {
        let i = ids
            .iter()
            .position(|id| *id == escalation.alert_id)
            .expect("ours");
        let fire = vakt_store::Fire {
            pages: vec![page(&escalation.alert_id, "alice", 1, step1(i))],
            timeline: Vec::new(),
            next: Ok((Position { step: 1, round: 0 }, step1(i))),
            incident: None,
            now: step1(i),
            claimed: escalation,
        };
        assert!(store.fire_escalation(p, &fire).await.expect("fire"));
    }
    let claimed = store.claim_escalations(far, far, 100).await.expect("claim");
    for escalation in claimed {
        let i = ids
            .iter()
            .position(|id| *id == escalation.alert_id)
            .expect("ours");
        if i >= 5 {
            continue;
        }
        let at = step1(i) + Duration::minutes(10);
        let fire = vakt_store::Fire {
            pages: vec![page(&escalation.alert_id, "bob", 2, at)],
            timeline: Vec::new(),
            next: Err("the policy ran out".into()),
            incident: None,
            now: at,
            claimed: escalation,
        };
        assert!(store.fire_escalation(p, &fire).await.expect("fire"));
    }
    // 0-3 acknowledged by alice after bob's page, 4 by bob, 5-6 by alice; 7-9 never.
    for (i, by) in [
        (0, "alice"),
        (1, "alice"),
        (2, "alice"),
        (3, "alice"),
        (4, "bob"),
        (5, "alice"),
        (6, "alice"),
    ] {
        store
            .operate(
                p,
                &Default::default(),
                &ids[i],
                &OperatorRequest {
                    action: OperatorAction::Ack,
                    by: by.into(),
                    comment: None,
                },
            )
            .await
            .expect("ack");
    }
    // One alert that resolves and comes back twice within the reopen window.
    for (k, severity) in ["critical", "ok", "critical", "ok", "critical"]
        .iter()
        .enumerate()
    {
        ingest(vec![(
            json!({"resource": "flaky", "check": "ping", "summary": "s", "severity": severity}),
            monday + Duration::hours(2) + Duration::minutes(i64::try_from(k).expect("small")),
        )])
        .await;
    }
    store
        .beat(&vakt_core::heartbeat::Heartbeat {
            name: "backup-db01".into(),
            resource: "db01".into(),
            check: None,
            service: None,
            environment: None,
            interval_secs: 86_400,
            grace_secs: 600,
            last_seen: monday - Duration::days(2),
            missing: true,
        })
        .await
        .expect("beat");
    store.close().await;

    let (from, to) = (
        monday.to_rfc3339(),
        (monday + Duration::days(7)).to_rfc3339(),
    );
    let args = |format: &str| {
        vec![
            "report".to_owned(),
            "--config".into(),
            config_path.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--from".into(),
            from.clone(),
            "--to".into(),
            to.clone(),
            "--format".into(),
            format.into(),
        ]
    };
    let run = |format: &str| {
        let args = args(format);
        let out = vakt(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let r: Value = serde_json::from_str(&run("json")).expect("json");
    let e = &r["response"]["escalations"];
    assert_eq!(e["alerts"], 10, "{e}");
    assert_eq!(e["pages"], 15);
    assert_eq!(e["acked_at_step"], json!({"1": 2, "2": 5}));
    assert_eq!(e["never_acked"], 3);
    assert_eq!(
        r["response"]["interruptions"],
        json!([
            {"user": "alice", "pages": 10, "business": 4, "sleep": 3, "off": 3},
            {"user": "bob", "pages": 5, "business": 4, "sleep": 1, "off": 0},
        ])
    );
    let q = &r["quality"];
    assert_eq!(
        (q["reopens"].clone(), q["reopened_alerts"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(q["reopened"][0][0]["resource"], "flaky");
    assert_eq!(q["reopened"][0][1], 2);
    assert_eq!(q["silent_sources"], json!([["old-agent", 1]]));
    assert_eq!(q["heartbeats_missing"][0]["name"], "backup-db01");

    // Business and sleep hours are the reader's to set: with business hours 0-24 and sleep
    // hours 3-4 every weekday page is a business hour; Saturday's stay off hours.
    let mut wide = args("json");
    wide.extend(["--business-hours", "0-24", "--sleep-hours", "3-4"].map(String::from));
    let out = vakt(&wide.iter().map(String::as_str).collect::<Vec<_>>());
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        r["response"]["interruptions"][0],
        json!({"user": "alice", "pages": 10, "business": 7, "sleep": 0, "off": 3})
    );
    let mut bad = args("json");
    bad.extend(["--sleep-hours", "22"].map(String::from));
    let out = vakt(&bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("sleep_hours \"22\": expected hours like 9-17"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let html = run("html");
    for part in [
        "<h3>Escalations</h3><p>15 pages for 10 alerts; 3 paged alerts were never acknowledged.</p>",
        "<tr><td>the page of step 2</td><td>5</td></tr>",
        "<tr><td>alice</td><td>10</td><td>4</td><td>3</td><td>3</td></tr>",
        "<p>2 re-opens of 1 alerts in the period.</p>",
        "<tr><td>old-agent</td><td>1</td></tr>",
        "<td>backup-db01</td><td>db01</td>",
    ] {
        assert!(html.contains(part), "{part} in the HTML report");
    }
    let csv = run("csv");
    for line in [
        "escalations,acked_at_step,2,5,",
        "interruptions,sleep_hours,alice,3,",
        "quality,silent_source,old-agent,0,1",
        "quality,heartbeat_missing,backup-db01,",
    ] {
        assert!(csv.contains(line), "{line} in the CSV report");
    }

    // The report can carry the advisor's suggestions for its period.
    let mut tuned = args("json");
    tuned.push("--tune".into());
    let out = vakt(&tuned.iter().map(String::as_str).collect::<Vec<_>>());
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        r["suggestions"]
            .as_array()
            .expect("suggestions asked for")
            .iter()
            .any(|s| s["kind"] == "early-escalation"),
        "{}",
        r["suggestions"]
    );
    let mut tuned = args("html");
    tuned.push("--tune".into());
    let out = vakt(&tuned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&out.stdout).contains("<h2>Suggestions</h2>"));

    // tune: bob's step pages although alice, paged before him, acknowledges.
    let out = tune_json(&config_path, &data, "30d");
    let advice: Value = serde_json::from_slice(&out.stdout).expect("json");
    let early: Vec<&Value> = advice["suggestions"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|s| s["kind"] == "early-escalation")
        .collect();
    assert_eq!(early.len(), 1, "{advice}");
    assert_eq!(early[0]["subject"], "step 2 of escalation policy \"ops\"");
    assert!(
        early[0]["evidence"]
            .as_str()
            .unwrap_or_default()
            .starts_with("it paged for 5 alerts; 4 of them were then acknowledged by someone an earlier step had paged"),
        "{}",
        early[0]
    );
}
