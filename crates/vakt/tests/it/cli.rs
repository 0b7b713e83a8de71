//! The `vakt` binary as a user runs it: help, version, rules check/test, send, and their exit codes.

use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::harness::{TestServer, repo_root};

fn vakt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .env_remove("VAKT_CONFIG")
        .env_remove("VAKT_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run vakt")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_teaches_and_version_answers() {
    let help = vakt(&["--help"]);
    assert!(help.status.success());
    let out = text(&help.stdout);
    for word in ["serve", "send", "rules", "Exit codes"] {
        assert!(out.contains(word), "{word} missing from --help:\n{out}");
    }
    for sub in [
        &["serve", "--help"][..],
        &["send", "--help"],
        &["rules", "check", "--help"],
        &["rules", "test", "--help"],
    ] {
        assert!(vakt(sub).status.success(), "{sub:?}");
    }
    let version = vakt(&["--version"]);
    assert_eq!(
        text(&version.stdout).trim(),
        format!("vakt {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        vakt(&["frobnicate"]).status.code(),
        Some(2),
        "clap's usage errors exit 2"
    );
    // The load tool once read `--fingerprints 0` as one alert; it is refused, by name.
    let zero = vakt(&["bench", "--fingerprints", "0", "--events", "1"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(
        text(&zero.stderr).contains("--fingerprints"),
        "{}",
        text(&zero.stderr)
    );
}

#[test]
fn rules_check_accepts_the_examples_and_points_at_errors() {
    for name in [
        "vakt.toml",
        "linux-server.toml",
        "web-service.toml",
        "network-segment.toml",
    ] {
        let example = repo_root().join("examples").join(name);
        let ok = vakt(&[
            "rules",
            "check",
            "--config",
            example.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(ok.status.code(), Some(0), "{name}: {}", text(&ok.stderr));
        assert!(text(&ok.stdout).starts_with("ok: "), "{}", text(&ok.stdout));
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[rules]]\nname = \"cpu\"\nwhen = 'metrics.load > '\n\n[[rules]]\nname = \"cpu\"\nactions = [\"page\"]\n").expect("write");
    let out = vakt(&[
        "rules",
        "check",
        "--config",
        bad.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let path = bad.display();
    assert!(
        err.contains(&format!("{path}:3:8: rule \"cpu\": when:")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:6:8: rule \"cpu\": duplicate rule name")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:7:12: rule \"cpu\": unknown action \"page\""
        )),
        "{err}"
    );
    let missing = vakt(&["rules", "check", "--config", "/nonexistent/vakt.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("cannot read"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn rules_test_shows_every_stage_and_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let event = dir.path().join("event.json");
    std::fs::write(&event, json!({"resource": "db01", "check": "disk_usage", "severity": "warning", "summary": "/var is 96% full", "metrics": {"used_pct": 96.0}}).to_string()).expect("write");
    let out = vakt(&["rules", "test", event.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for fragment in [
        "normalise",
        "filter",
        "categorise",
        "exception",
        "category set by rule \"disk-nearly-full\"",
        "correlate",
        "decide",
        "run clean-tmp (trigger), notify-ops (trigger)",
        "record",
    ] {
        assert!(stdout.contains(fragment), "{fragment} missing:\n{stdout}");
    }
    let json_out = vakt(&[
        "rules",
        "test",
        "--json",
        event.to_str().expect("utf-8 path"),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("json output");
    assert_eq!(report[0]["event"]["category"], "exception");
    assert_eq!(report[0]["transition"], "new_alert");

    std::fs::write(&event, r#"{"resource": "db01", "summary": 5}"#).expect("write");
    let bad = vakt(&["rules", "test", event.to_str().expect("utf-8 path")]);
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(
        err.contains("summary: expected a string") && err.contains("check: missing required field"),
        "{err}"
    );
}

/// The example configuration's own rule tests pass through the real binary (CI runs them
/// here), and a suite that expects something else fails with exit 1, naming the step, the
/// field, what was expected and what happened, with the event's trace.
#[test]
fn rule_test_suites_pass_for_the_example_and_fail_with_the_trace() {
    let root = repo_root();
    let config = root.join("examples/vakt.toml");
    let suite = root.join("examples/tests");
    let out = vakt(&[
        "rules",
        "test",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--suite",
        suite.to_str().expect("utf-8 path"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("6 tests, 6 passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("  ok    a disk above 95%"), "{stdout}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("wrong.toml");
    std::fs::write(
        &file,
        r#"[[test]]
name = "the author thinks 90% pages"

[[test.step]]
event = { resource = "db01", check = "disk_usage", summary = "/ 90%", severity = "warning", metrics = { used_pct = 90.0 } }
expect = { category = "exception", actions = ["notify-ops"] }
"#,
    )
    .expect("write");
    let args = |json: bool| {
        let mut args = vec![
            "rules",
            "test",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--suite",
            dir.path().to_str().expect("utf-8 path"),
        ];
        if json {
            args.push("--json");
        }
        vakt(&args)
    };
    let out = args(false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for fragment in [
        "FAIL  the author thinks 90% pages (line 1)",
        "step 1 (line 4): category: expected exception, got warning",
        "step 1 (line 4): actions: expected notify-ops, got none",
        "categorise warning",
        "[rules: disk-filling]",
        "1 tests, 0 passed, 1 failed",
    ] {
        assert!(stdout.contains(fragment), "{fragment:?} missing:\n{stdout}");
    }
    assert!(text(&out.stderr).contains("1 of 1 rule tests failed"));
    let report: serde_json::Value =
        serde_json::from_slice(&args(true).stdout).expect("json output");
    assert_eq!(report[0]["passed"], false);
    assert_eq!(report[0]["mismatches"][0]["field"], "category");
    assert_eq!(
        report[0]["mismatches"][0]["trace"].as_array().map(Vec::len),
        Some(6)
    );

    std::fs::write(
        &file,
        "[[test]]\nname = \"x\"\n[[test.step]]\nevent = { resource = \"a\" }\n",
    )
    .expect("write");
    let out = args(false);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("wrong.toml:4:") && err.contains("check: missing required field"),
        "{err}"
    );
}

#[tokio::test]
async fn send_reaches_a_server_and_exit_codes_say_what_happened() {
    let server = TestServer::start().await;
    let url = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        vakt(&[
            "send",
            "--url",
            &url,
            "--resource",
            "web1",
            "--check",
            "http",
            "--severity",
            "major",
            "--summary",
            "502 from /",
            "--label",
            "site=shop",
            "--metric",
            "latency_ms=812",
        ])
    })
    .await
    .expect("send ran");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"accepted\":1"));
    let (_, alerts) = server.get("/api/v1/alerts?resource=web1").await;
    assert_eq!(alerts["items"][0]["labels"]["site"], "shop");

    let bad = vakt(&[
        "send",
        "--url",
        "http://127.0.0.1:9",
        "--resource",
        "r",
        "--check",
        "c",
        "--severity",
        "fatal",
        "--summary",
        "s",
    ]);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "a bad severity is the user's to fix"
    );
    assert!(
        text(&bad.stderr).contains("unknown severity"),
        "{}",
        text(&bad.stderr)
    );
    let down = vakt(&[
        "send",
        "--url",
        "http://127.0.0.1:9",
        "--resource",
        "r",
        "--check",
        "c",
        "--summary",
        "s",
    ]);
    assert_eq!(
        down.status.code(),
        Some(2),
        "an unreachable server is environmental"
    );
}

#[test]
fn serve_exits_2_when_it_cannot_listen_and_1_on_a_bad_config() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let out = vakt(&[
        "serve",
        "--listen",
        &addr,
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot listen"),
        "{}",
        text(&out.stderr)
    );
    let out = vakt(&[
        "serve",
        "--listen",
        "nowhere",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--listen / VAKT_LISTEN"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn the_load_tool_sends_a_bounded_mix_and_reports_what_was_accepted() {
    let server = crate::harness::TestServer::start().await;
    let syslog = server
        .server
        .as_ref()
        .and_then(|s| s.sources.syslog_tcp.first().copied())
        .expect("syslog tcp bound");
    for (format, target, events) in [
        ("batch", server.base.clone(), 3000),
        ("ndjson", server.base.clone(), 1000),
        ("json", server.base.clone(), 200),
        ("alertmanager", server.base.clone(), 1000),
        ("syslog-tcp", format!("tcp://{syslog}"), 500),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(["bench", "--format", format, "--target", &target, "--json"])
            .args([
                "--events",
                &events.to_string(),
                "--fingerprints",
                "100",
                "--batch",
                "250",
            ])
            .output()
            .await
            .expect("vakt bench");
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        assert_eq!(report["accepted"], events, "{format}: {report}");
        assert!(
            report["events_per_second"]
                .as_f64()
                .is_some_and(|r| r > 0.0)
        );
        if format != "syslog-tcp" {
            assert!(
                report["latency_ms"]["p99"]
                    .as_f64()
                    .is_some_and(|p| p > 0.0),
                "{report}"
            );
        }
    }
    // Everything the tool was told was accepted is stored: 3000 + 1000 + 200 HTTP events
    // and 1000 Alertmanager alerts (syslog arrives asynchronously and is counted apart).
    let (_, page) = server.get("/api/v1/events?source=vakt-bench&limit=1").await;
    assert!(page["items"].as_array().is_some_and(|i| !i.is_empty()));
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let received = |channel: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "vakt_events_received_total{{channel=\"{channel}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(received("http"), 4200.0, "{metrics}");
    assert_eq!(received("alertmanager"), 1000.0);
    // A refused load says so with exit 1: nothing listens there.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "bench",
            "--events",
            "10",
            "--target",
            "http://127.0.0.1:9",
            "--timeout-secs",
            "2",
        ])
        .output()
        .await
        .expect("vakt bench");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("cannot connect"),
        "{}",
        text(&out.stdout)
    );
}

/// Issue 13: an empty list says so instead of printing nothing.
#[tokio::test]
async fn empty_lists_say_so() {
    let server = crate::harness::TestServer::start().await;
    for (args, expected) in [
        (vec!["incident", "list"], "no incidents"),
        (vec!["silence", "list"], "no silences"),
        (vec!["actions", "list"], "no actions"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(&args)
            .args(["--url", &server.base])
            .output()
            .await
            .expect("vakt runs");
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            text(&out.stderr)
        );
        assert_eq!(stdout.trim(), expected, "{args:?}");
    }
}

/// Against a server that requires auth, the load tool without a token is refused (401, exit
/// 1, nothing accepted); with an ingest token (`--token` or `VAKT_TOKEN`) every alert is.
#[tokio::test]
async fn the_load_tool_signs_in_with_a_token() {
    let work = tempfile::tempdir().expect("dir");
    let config = work.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nauth = \"required\"\nwrite_rate_per_client = 0\n\n[storage]\ndata_dir = \"{}\"\n",
            work.path().join("data").display()
        ),
    )
    .expect("config");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "token", "create", "--name", "load", "--role", "ingest", "--config",
        ])
        .arg(&config)
        .output()
        .expect("vakt token create");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let token = text(&made.stdout).trim().to_owned();
    let node = crate::harness::spawn_node(&config, None).await;
    let bench = |token: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"));
        command
            .args(["bench", "--format", "alertmanager", "--target", &node.base])
            .args([
                "--events",
                "300",
                "--batch",
                "1",
                "--concurrency",
                "4",
                "--json",
            ])
            .env_remove("VAKT_TOKEN");
        if let Some(token) = token {
            command.env("VAKT_TOKEN", token);
        }
        command.output()
    };
    let refused = bench(None).await.expect("vakt bench");
    let report: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("a JSON report");
    assert_eq!(refused.status.code(), Some(1), "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["refused"]["401"], 300, "{report}");
    let signed_in = bench(Some(&token)).await.expect("vakt bench");
    let report: serde_json::Value =
        serde_json::from_slice(&signed_in.stdout).expect("a JSON report");
    assert!(
        signed_in.status.success(),
        "{report} {}",
        text(&signed_in.stderr)
    );
    assert_eq!(report["accepted"], 300, "{report}");
}
