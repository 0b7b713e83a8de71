//! Escalation end to end: a policy walked to whoever is on call (a handoff mid-test), an
//! ack that stops it and an un-ack that resumes it, a kill -9 in the middle, and two vakt
//! nodes on one PostgreSQL firing each step of 1,000 escalations exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::actions::{Receiver, eventually};
use crate::harness::{PgDatabase, TestServer, spawn_node};

/// The alert's escalation timeline lines, with when each was written.
async fn escalation_lines(server: &TestServer, alert_id: &str) -> Vec<(DateTime<Utc>, String)> {
    let (status, alert) = server.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(status, 200, "{alert}");
    alert["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| t["kind"] == "escalation")
        .map(|t| {
            (
                t["at"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_default(),
                t["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn local(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S").to_string()
}

#[tokio::test]
async fn an_unacknowledged_alert_climbs_to_whoever_is_on_call_and_an_ack_stops_it() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let start = Utc::now();
    // alice is on call until 3 s from now, then bob (a one-hour rotation whose handoff falls
    // in the middle of the walk).
    let handoff = start + chrono::Duration::seconds(3) - chrono::Duration::seconds(3600);
    let url = &receiver.url;
    let config = format!(
        r#"
[dispatch]
poll_interval_ms = 100
[escalation]
poll_interval_ms = 100

[[users]]
id = "alice"
phone_webhook = "{url}/alice"
[[users]]
id = "bob"
phone_webhook = "{url}/bob"
[[users]]
id = "lead"
phone_webhook = "{url}/lead"
[[users]]
id = "boss"
phone_webhook = "{url}/boss"

[[schedules]]
name = "primary"
[[schedules.layers]]
users = ["alice", "bob"]
rotation = "custom"
length_secs = 3600
handoff = "{handoff}"

[channels.chat]
type = "webhook"
url = "{url}/chat"

[[escalation_policies]]
name = "exceptions"
repeat = 1
repeat_after_secs = 2
[[escalation_policies.steps]]
after_secs = 0
notify = [{{ schedule = "primary" }}]
[[escalation_policies.steps]]
after_secs = 2
notify = [{{ user = "lead" }}, {{ channel = "chat" }}]

[[escalation_policies]]
name = "slow"
[[escalation_policies.steps]]
after_secs = 0
notify = [{{ user = "lead" }}]
[[escalation_policies.steps]]
after_secs = 3
notify = [{{ user = "boss" }}]

[[rules]]
name = "database"
when = 'service == "db"'
escalate = "slow"
[[rules]]
name = "exceptions"
when = 'severity == "critical"'
escalate = "exceptions"
"#,
        handoff = local(handoff),
    );
    let server = TestServer::with_config(Some(&config)).await;
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "web1", "check": "http", "severity": "critical", "summary": "down"}),
        )
        .await;
    assert_eq!(status, 202);
    let alert_id = server.only_alert_id().await;

    // Round 1: step 1 pages alice (on call), step 2 lead and the chat channel; round 2 starts
    // 2 s later: step 1 pages bob (on call since the handoff), step 2 lead and chat again.
    let counts = || {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in receiver.all() {
            *counts.entry(r.path.clone()).or_default() += 1;
        }
        counts
    };
    eventually(20, "the whole policy walked", || async {
        (counts().get("/bob").copied() == Some(1) && counts().get("/chat").copied() == Some(2))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expected: BTreeMap<String, usize> =
        [("/alice", 1), ("/bob", 1), ("/chat", 2), ("/lead", 2)]
            .into_iter()
            .map(|(p, n)| (p.to_owned(), n))
            .collect();
    assert_eq!(counts(), expected, "each step once, to the right people");
    let order: Vec<String> = receiver
        .all()
        .iter()
        .filter(|r| r.path == "/alice" || r.path == "/bob")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(order, ["/alice", "/bob"]);
    // The pages carry the policy, the step and who is paged.
    let bob = &receiver.on_path("/bob")[0];
    assert_eq!(bob.body["purpose"], "escalation");
    assert_eq!(bob.body["page"]["policy"], "exceptions");
    assert_eq!(bob.body["page"]["step"], 1);
    assert_eq!(bob.body["page"]["round"], 2);
    assert_eq!(bob.body["page"]["user"], "bob");
    assert_eq!(bob.body["alert"]["id"], alert_id.as_str());

    // The timeline: started, four steps at 0, 2, 4, 6 s (never early, never much late), ended.
    let lines = escalation_lines(&server, &alert_id).await;
    let fired: Vec<&(DateTime<Utc>, String)> =
        lines.iter().filter(|(_, m)| m.contains(" fired")).collect();
    assert_eq!(fired.len(), 4, "{lines:#?}");
    assert!(fired[0].1.contains("step 1 of 2 (round 1 of 2) fired: paged alice via phone webhook (on call for schedule primary)"), "{lines:#?}");
    assert!(fired[1].1.contains("step 2 of 2 (round 1 of 2) fired: paged lead via phone webhook (user lead); channel chat"), "{lines:#?}");
    assert!(
        fired[2]
            .1
            .contains("step 1 of 2 (round 2 of 2) fired: paged bob via phone webhook"),
        "{lines:#?}"
    );
    assert!(
        fired[3].1.contains("step 2 of 2 (round 2 of 2)"),
        "{lines:#?}"
    );
    let opened = lines[0].0;
    assert!(
        lines[0]
            .1
            .starts_with("escalation policy exceptions started by rule exceptions")
    );
    for (i, (at, message)) in fired.iter().enumerate() {
        let offset = (*at - opened).num_milliseconds();
        let due = 2000 * i64::try_from(i).unwrap_or(0);
        assert!(
            // Never early; late only by polling and a loaded test machine.
            offset >= due - 50 && offset < due + 3000,
            "step {i} fired {offset} ms after the start, due at {due} ms: {message}"
        );
    }
    assert!(
        lines
            .last()
            .is_some_and(|(_, m)| m.contains("ran its last step")),
        "{lines:#?}"
    );
    let (_, escalation) = server
        .get(&format!("/api/v1/alerts/{alert_id}/escalation"))
        .await;
    assert_eq!(escalation["status"], "done", "{escalation}");
    assert_eq!(escalation["fired"], 4);

    // A second alert climbs "slow": lead at once; acknowledged, boss is not paged while the
    // ack holds; un-acknowledged, the rest of the wait runs out and boss is paged.
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "db1", "check": "replication", "severity": "major", "service": "db", "summary": "lagging"}),
        )
        .await;
    assert_eq!(status, 202);
    let (_, alerts) = server.get("/api/v1/alerts?service=db").await;
    let db_alert = alerts["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    eventually(10, "lead paged for the database alert", || async {
        (counts().get("/lead").copied() == Some(3)).then_some(())
    })
    .await;
    let (status, body) = server
        .post(
            &format!("/api/v1/alerts/{db_alert}/ack"),
            &json!({"by": "lead"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, paused) = server
        .get(&format!("/api/v1/alerts/{db_alert}/escalation"))
        .await;
    assert_eq!(paused["status"], "paused", "{paused}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        counts().get("/boss"),
        None,
        "the ack stopped the escalation"
    );
    let (status, body) = server
        .post(
            &format!("/api/v1/alerts/{db_alert}/unack"),
            &json!({"by": "lead"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(10, "boss paged after the un-ack", || async {
        (counts().get("/boss").copied() == Some(1)).then_some(())
    })
    .await;
    let lines = escalation_lines(&server, &db_alert).await;
    let messages: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("paused: acknowledged by lead")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("resumed: unacknowledged by lead")),
        "{messages:#?}"
    );
    let resumed = lines
        .iter()
        .find(|(_, m)| m.contains("resumed"))
        .map(|(at, _)| *at)
        .unwrap_or_default();
    let boss_fired = lines
        .iter()
        .find(|(_, m)| m.contains("step 2 of 2"))
        .map(|(at, _)| *at)
        .unwrap_or_default();
    // Acknowledged about 0.1-1 s into a 3 s wait: the rest (2-3 s) ran after the un-ack.
    let after = (boss_fired - resumed).num_milliseconds();
    assert!(
        (1500..3500).contains(&after),
        "boss paged {after} ms after the un-ack"
    );
    // A phone gateway's URL is its credential: the pages show only where it points.
    let (_, pages) = server.get("/api/v1/actions?limit=1000").await;
    let shown = pages.to_string();
    assert!(shown.contains("phone"), "{shown}");
    assert!(
        !shown.contains(&format!("{}/boss", receiver.url)),
        "{shown}"
    );
}

#[tokio::test]
async fn a_resolve_ends_the_escalation_and_unknown_targets_are_refused_at_load() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let url = &receiver.url;
    let config = format!(
        r#"
[escalation]
poll_interval_ms = 100
[[users]]
id = "lead"
phone_webhook = "{url}/lead"
[[escalation_policies]]
name = "p"
[[escalation_policies.steps]]
after_secs = 2
notify = [{{ user = "lead" }}]
[[rules]]
name = "all"
escalate = "p"
"#
    );
    let server = TestServer::with_config(Some(&config)).await;
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "web1", "check": "http", "severity": "critical", "summary": "down"}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "web1", "check": "http", "severity": "ok", "summary": "up"}),
        )
        .await;
    assert_eq!(status, 202);
    let alert_id = server.only_alert_id().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.all().is_empty(), "a resolved alert pages nobody");
    let lines = escalation_lines(&server, &alert_id).await;
    assert!(
        lines
            .iter()
            .any(|(_, m)| m == "escalation policy p ended: the alert resolved (an event)"),
        "{lines:#?}"
    );

    // A policy naming someone the configuration does not know is refused with the place.
    let bad = config.replace("{ user = \"lead\" }", "{ user = \"nobody\" }");
    let path = server.dir.path().join("bad.toml");
    std::fs::write(&path, bad).expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["rules", "check", "--config"])
        .arg(&path)
        .output()
        .await
        .expect("vakt runs");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("escalation_policies.p.steps[0]: unknown user nobody"),
        "{text}"
    );
}

async fn get_json(url: String) -> Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn kill_nine_mid_escalation_repeats_no_step_and_loses_none() {
    let work = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start(Duration::ZERO).await;
    let url = &receiver.url;
    let config = format!(
        r#"
[storage]
data_dir = "{data}"
[dispatch]
poll_interval_ms = 100
[escalation]
poll_interval_ms = 100
[[users]]
id = "s1"
phone_webhook = "{url}/s1"
[[users]]
id = "s2"
phone_webhook = "{url}/s2"
[[users]]
id = "s3"
phone_webhook = "{url}/s3"
[[users]]
id = "s4"
phone_webhook = "{url}/s4"
[[escalation_policies]]
name = "ladder"
[[escalation_policies.steps]]
notify = [{{ user = "s1" }}]
[[escalation_policies.steps]]
after_secs = 2
notify = [{{ user = "s2" }}]
[[escalation_policies.steps]]
after_secs = 2
notify = [{{ user = "s3" }}]
[[escalation_policies.steps]]
after_secs = 4
notify = [{{ user = "s4" }}]
[[rules]]
name = "all"
escalate = "ladder"
"#,
        data = work.path().join("data").display()
    );
    let path = work.path().join("vakt.toml");
    std::fs::write(&path, config).expect("config");
    let mut node = spawn_node(&path, None).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/api/v1/events", node.base))
        .json(&json!({"resource": "web1", "check": "http", "severity": "critical", "summary": "down"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 202);
    eventually(10, "step 1 paged", || async {
        (!receiver.on_path("/s1").is_empty()).then_some(())
    })
    .await;
    node.child.start_kill().expect("kill -9");
    let _ = node.child.wait().await;
    // Steps 2 and 3 come due while vakt is down (at 2 s and 4 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(receiver.on_path("/s2").is_empty());
    let node = spawn_node(&path, None).await;
    eventually(20, "step 4 paged", || async {
        (!receiver.on_path("/s4").is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for step in ["/s1", "/s2", "/s3", "/s4"] {
        let got = receiver.on_path(step);
        let keys: std::collections::BTreeSet<&String> =
            got.iter().map(|r| &r.headers["idempotency-key"]).collect();
        assert_eq!(
            keys.len(),
            1,
            "{step} paged by exactly one step firing: {got:?}"
        );
    }
    let alerts = get_json(format!("{}/api/v1/alerts", node.base)).await;
    let alert_id = alerts["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let alert = get_json(format!("{}/api/v1/alerts/{alert_id}", node.base)).await;
    let fired: Vec<String> = alert["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["message"].as_str().map(str::to_owned))
        .filter(|m| m.contains(" fired"))
        .collect();
    assert_eq!(fired.len(), 4, "{fired:#?}");
    assert!(!fired[0].contains("late by"), "{fired:#?}");
    assert!(
        fired[1].contains("step 2 of 4") && fired[1].contains("late by"),
        "{fired:#?}"
    );
    assert!(
        fired[2].contains("step 3 of 4") && fired[2].contains("late by"),
        "{fired:#?}"
    );
    let pages = get_json(format!(
        "{}/api/v1/actions?limit=1000&alert_id={alert_id}",
        node.base
    ))
    .await;
    assert_eq!(pages["items"].as_array().map(Vec::len), Some(4), "{pages}");
    drop(node);
}

#[tokio::test]
async fn two_nodes_on_postgresql_fire_each_step_of_1000_escalations_exactly_once() {
    let Some(db) = PgDatabase::create(
        "two_nodes_on_postgresql_fire_each_step_of_1000_escalations_exactly_once",
        "vakt_esc",
    )
    .await
    else {
        return;
    };
    let url = db.url.clone();
    let work = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"
[dispatch]
poll_interval_ms = 100
concurrency = 64
[escalation]
poll_interval_ms = 50
[channels.pager]
type = "webhook"
url = "{}/page"
[[escalation_policies]]
name = "two-steps"
[[escalation_policies.steps]]
notify = [{{ channel = "pager" }}]
[[escalation_policies.steps]]
after_secs = 2
notify = [{{ channel = "pager" }}]
[[rules]]
name = "all"
escalate = "two-steps"
"#,
        receiver.url
    );
    let path = work.path().join("vakt.toml");
    std::fs::write(&path, config).expect("config");
    // The first node creates the schema; the second starts on it.
    let a = spawn_node(&path, Some(&url)).await;
    let b = spawn_node(&path, Some(&url)).await;
    let events: Vec<Value> = (0..1000)
        .map(|i| json!({"resource": format!("host{i}"), "check": "http", "severity": "critical", "summary": "down"}))
        .collect();
    let client = reqwest::Client::new();
    for (i, chunk) in events.chunks(250).enumerate() {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let response = client
            .post(format!("{base}/api/v1/events"))
            .json(&chunk)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 202);
    }
    eventually(120, "2,000 pages delivered", || async {
        let distinct: std::collections::BTreeSet<String> = receiver
            .all()
            .iter()
            .map(|r| r.headers["idempotency-key"].clone())
            .collect();
        (distinct.len() >= 2000).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Exactly one page per (alert, step): no step fired twice, none was lost.
    let mut per_step: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    for r in receiver.all() {
        if keys.insert(r.headers["idempotency-key"].clone()) {
            *per_step
                .entry((
                    r.body["alert"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    r.body["page"]["step"].as_i64().unwrap_or_default(),
                ))
                .or_default() += 1;
        }
    }
    assert_eq!(per_step.len(), 2000, "1,000 alerts x 2 steps");
    assert!(per_step.values().all(|n| *n == 1), "a step fired twice");
    // Both nodes' counters add up to the steps fired; say how they shared the work.
    let mut total = 0;
    for node in [&a, &b] {
        let text = reqwest::get(format!("{}/metrics", node.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let fired: u64 = text
            .lines()
            .filter(|l| l.starts_with("vakt_escalation_steps_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum();
        eprintln!("node {} fired {fired} steps", node.base);
        total += fired;
    }
    assert_eq!(total, 2000);
    drop(a);
    drop(b);
    db.drop_database().await;
}

/// Issue 13: a chat page mentions the paged person in the form that notifies them on that
/// service: Slack `<@MEMBER_ID>`, Mattermost `@username`, Teams an `<at>` mention entity;
/// a bare chat handle stays text.
#[tokio::test]
async fn chat_pages_mention_people_by_their_service_ids() {
    for (kind, user, expect) in [
        (
            "slack",
            "chat = \"@alice\"\nslack_id = \"U024BE7LH\"",
            "<@U024BE7LH> [PAGE CRITICAL]",
        ),
        (
            "mattermost",
            "chat = \"@alice\"\nmattermost = \"alice.s\"",
            "@alice.s [PAGE CRITICAL]",
        ),
        (
            "teams",
            "name = \"Alice Svensson\"\nteams_id = \"alice@example.com\"",
            "<at>Alice Svensson</at> [PAGE CRITICAL]",
        ),
    ] {
        let receiver = Receiver::start(Duration::ZERO).await;
        let url = &receiver.url;
        let config = format!(
            r#"
[dispatch]
poll_interval_ms = 100
[escalation]
poll_interval_ms = 100
chat_channel = "chat"

[[users]]
id = "alice"
{user}

[channels.chat]
type = "{kind}"
url = "{url}/chat"

[[escalation_policies]]
name = "p"
[[escalation_policies.steps]]
after_secs = 0
notify = [{{ user = "alice" }}]

[[rules]]
name = "page"
when = 'severity == "critical"'
escalate = "p"
"#
        );
        let server = TestServer::with_config(Some(&config)).await;
        server
            .post(
                "/api/v1/events",
                &json!({"resource": "web1", "check": "http", "severity": "critical", "summary": "down"}),
            )
            .await;
        let page = eventually(20, "the chat page", || async {
            receiver.all().first().map(|r| r.body.clone())
        })
        .await;
        let text = page.to_string();
        assert!(
            text.contains(&expect.replace('"', "\\\"")),
            "{kind}: {page}"
        );
        if kind == "teams" {
            let entity = &page["attachments"][0]["content"]["msteams"]["entities"][0];
            assert_eq!(entity["type"], "mention", "{page}");
            assert_eq!(entity["mentioned"]["id"], "alice@example.com", "{page}");
            assert_eq!(entity["text"], "<at>Alice Svensson</at>", "{page}");
        }
        if kind == "slack" {
            assert!(
                !text.contains("@alice [PAGE"),
                "no text-only mention: {page}"
            );
        }
    }
}
