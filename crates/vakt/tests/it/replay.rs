//! `vakt replay` through the real binary over a server's stored events: a rule change whose
//! differences are known exactly, the same configuration (no difference), one event's two
//! traces side by side, a filter, and the exit codes.

use std::process::Output;

use serde_json::{Value, json};

use crate::harness::TestServer;

/// Hosts whose disk is at 96% (even) or 98% (odd), noisy fans, debug chatter.
const HOSTS: usize = 2000;
const NOISY: usize = 300;
const DEBUG: usize = 200;

const BASE: &str = r#"
[server]
write_rate_per_client = 0
[dispatch]
enabled = false

[[rules]]
name = "drop-debug"
when = 'summary.startsWith("DEBUG")'
drop = true

[[rules]]
name = "disk-full"
when = 'check == "disk" && "used_pct" in metrics && metrics.used_pct >= 95.0'
severity = "critical"
category = "exception"
actions = ["hook"]

[actions.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"
"#;

fn vakt(args: &[&str]) -> Output {
    crate::harness::vakt_cli(args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_change_replays_to_exactly_its_differences() {
    let mut server = TestServer::with_config(Some(BASE)).await;
    let mut events: Vec<Value> = Vec::new();
    for i in 0..HOSTS {
        let pct = if i % 2 == 0 { 96.0 } else { 98.0 };
        events.push(json!({"resource": format!("host{i}"), "check": "disk", "summary": format!("/var {pct}%"), "severity": "warning", "metrics": {"used_pct": pct}}));
        if i < NOISY {
            events.push(json!({"resource": format!("noisy{i}"), "check": "fan", "summary": "fan speed", "severity": "major"}));
        }
        if i < DEBUG {
            events.push(json!({"resource": format!("host{i}"), "check": "app", "summary": "DEBUG tick", "severity": "info"}));
        }
    }
    for chunk in events.chunks(500) {
        let (status, body) = server.post("/api/v1/events", &json!(chunk)).await;
        assert_eq!(status, 202, "{body}");
    }
    // An even host's event, to look at closely later.
    let (_, page) = server
        .get("/api/v1/events?resource=host0&check=disk&limit=1")
        .await;
    let even_event = page["items"][0]["id"]
        .as_str()
        .expect("event id")
        .to_owned();
    assert_eq!(
        page["items"][0]["severity"], "critical",
        "stored as the rule set it"
    );
    assert_eq!(
        page["items"][0]["received"]["severity"], "warning",
        "and as it arrived"
    );
    server.stop().await;

    let dir = server.dir.path();
    let new_path = dir.join("new.toml");
    std::fs::write(
        &new_path,
        BASE.replace("used_pct >= 95.0", "used_pct >= 97.0").replace(
            "[[rules]]\nname = \"drop-debug\"",
            "[[rules]]\nname = \"drop-noisy\"\nwhen = 'resource.startsWith(\"noisy\")'\ndrop = true\n\n[[rules]]\nname = \"drop-debug\"",
        ),
    )
    .expect("write");
    let base_path = server.config_path();
    let data = server.data_dir();
    let replay = |config: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--base",
            base_path.to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        vakt(&args)
    };

    let out = replay(&new_path, &["--json", "--list", "10000"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    let total = (HOSTS + NOISY + DEBUG) as u64;
    assert_eq!(report["read"], total);
    assert_eq!(report["replayed"], total);
    assert_eq!(report["different"], (HOSTS / 2 + NOISY) as u64);
    let changes = &report["changes"];
    for (what, count) in [
        ("severity", HOSTS / 2),
        ("category", HOSTS / 2),
        ("actions", HOSTS / 2),
        ("transition", NOISY),
        ("dropped", NOISY),
    ] {
        assert_eq!(changes[what], count as u64, "{what}: {changes}");
    }
    assert_eq!(changes.as_object().map(|c| c.len()), Some(5), "{changes}");
    let (base, new) = (&report["base"], &report["new"]);
    assert_eq!(base["opened"], (HOSTS + NOISY) as u64);
    assert_eq!(new["opened"], HOSTS as u64);
    assert_eq!(base["dropped"], DEBUG as u64);
    assert_eq!(new["dropped"], (DEBUG + NOISY) as u64);
    assert_eq!(base["actions"]["hook"], HOSTS as u64);
    assert_eq!(new["actions"]["hook"], (HOSTS / 2) as u64);
    let differences = report["differences"].as_array().expect("list");
    assert_eq!(differences.len(), HOSTS / 2 + NOISY, "all listed");
    let host0 = differences
        .iter()
        .find(|d| d["event_id"] == even_event.as_str())
        .expect("host0's event differs");
    let what: Vec<(&str, &str, &str)> = host0["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["what"].as_str().unwrap_or_default(),
                c["base"].as_str().unwrap_or_default(),
                c["new"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        what,
        [
            ("category", "exception", "warning"),
            ("severity", "critical", "warning"),
            ("actions", "hook", ""),
        ]
    );
    assert_eq!(host0["base_trace"].as_array().map(Vec::len), Some(6));

    // The text report, the default list and exit 1.
    let out = replay(&new_path, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    for fragment in [
        &format!("replayed {total} of {total} stored events"),
        "alerts opened",
        &format!("{} events would be handled differently", HOSTS / 2 + NOISY),
        "(listed 100 of 1300",
        "severity: critical -> warning",
        "actions: hook -> none",
    ] {
        assert!(stdout.contains(fragment), "{fragment:?} missing:\n{stdout}");
    }
    assert!(
        text(&out.stderr).contains("1300 of 2500 replayed events would be handled differently"),
        "{}",
        text(&out.stderr)
    );

    // The same configuration: nothing differs, exit 0.
    let out = replay(&base_path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("no event would be handled differently"));

    // One event, both traces side by side; the categorise stage is marked.
    let out = replay(&new_path, &["--event", &even_event]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("event {even_event} received")),
        "{stdout}"
    );
    assert!(stdout.contains("*categorise"), "{stdout}");
    assert!(stdout.contains("[rules: disk-full]"), "{stdout}");

    // A filter replays only what it selects.
    let out = replay(&new_path, &["--filter", "resource=~\"noisy.*\"", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["read"], total);
    assert_eq!(report["replayed"], NOISY as u64);
    assert_eq!(report["different"], NOISY as u64);

    // Without --base the configuration is compared with the events as stored: what the
    // record keeps (dropped, category, severity, fingerprint).
    let against_record = |config: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--config",
            config.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        vakt(&args)
    };
    let out = against_record(&new_path, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["base_is_record"], true);
    assert_eq!(report["different"], (HOSTS / 2 + NOISY) as u64);
    assert_eq!(report["changes"]["severity"], (HOSTS / 2) as u64);
    assert_eq!(report["changes"]["dropped"], NOISY as u64);
    assert_eq!(report["base"]["dropped"], DEBUG as u64, "as stored");
    let out = against_record(&base_path, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the rules in force agree with what was stored"
    );
    let out = against_record(&new_path, &["--event", &even_event]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("alerts opened                     -"),
        "{stdout}"
    );
    assert!(
        stdout.contains("base: exception category set by rule \"disk-full\""),
        "the stored trace beside the new one:\n{stdout}"
    );

    // Wrong input says what is wrong.
    for (args, says) in [
        (vec!["--since", "2w"], "--since \"2w\": unknown unit"),
        (
            vec!["--from", "yesterday"],
            "--from \"yesterday\": expected RFC 3339",
        ),
        (vec!["--filter", "resource=~\"(\""], "--filter"),
    ] {
        let out = replay(&new_path, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// `POST /api/v1/replay`: the same replay on the server's store for a configuration in the
/// request, compared with the one in force; a configuration that names a secret to read,
/// or a period too long, is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_replays_a_posted_configuration_against_the_one_in_force() {
    let server = TestServer::with_config(Some(BASE)).await;
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let pct = if i % 2 == 0 { 96.0 } else { 98.0 };
            json!({"resource": format!("host{i}"), "check": "disk", "summary": "s", "severity": "warning", "metrics": {"used_pct": pct}})
        })
        .collect();
    let (status, _) = server.post("/api/v1/events", &json!(events)).await;
    assert_eq!(status, 202);
    let new = BASE.replace("used_pct >= 95.0", "used_pct >= 97.0");
    let (status, report) = server
        .post(
            "/api/v1/replay",
            &json!({"config": new, "since": "1h", "list": 5}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["replayed"], 40);
    assert_eq!(report["different"], 20);
    assert_eq!(report["changes"]["severity"], 20);
    assert_eq!(report["differences"].as_array().map(Vec::len), Some(5));
    assert_eq!(report["base"]["actions"]["hook"], 40);
    assert_eq!(report["new"]["actions"]["hook"], 20);
    let (status, report) = server
        .post("/api/v1/replay", &json!({"config": BASE, "base": "record"}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["different"], 0,
        "the rules in force made what is stored"
    );

    let secret =
        format!("{BASE}\n[channels.chat]\ntype = \"slack\"\nurl = {{ file = \"/etc/passwd\" }}\n");
    for (body, says) in [
        (
            json!({"config": secret}),
            "channels.chat.url: an env or file reference",
        ),
        (json!({"config": "[[rules]]\nname = 1\n"}), "config"),
        (
            json!({"config": BASE, "since": "90d"}),
            "longer than 31 days",
        ),
        (
            json!({"config": BASE, "base": "yesterday"}),
            "expected current or record",
        ),
        (json!({"config": BASE, "surprise": true}), "unknown field"),
    ] {
        let (status, answer) = server.post("/api/v1/replay", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer.to_string().contains(says),
            "{says:?} missing: {answer}"
        );
    }
}
