//! Long life (issue 17): backups while ingesting, `vakt db`, retention running in the server,
//! list answers cut by bytes, write rate limits per client, secrets from the environment.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;

async fn vakt(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .env("VAKT_LOG", "warn")
        .env_remove("VAKT_DATABASE_URL")
        .output()
        .await
        .expect("vakt runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A backup taken while events keep arriving holds every event acknowledged before it
/// began; restored into a fresh data directory, a server serves them all.
#[tokio::test]
async fn a_backup_taken_while_ingesting_restores_every_acknowledged_event() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sender = {
        let acked = std::sync::Arc::clone(&acked);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !*stop_rx.borrow() {
                n += 1;
                let body = json!({"resource": format!("host{}", n % 50), "check": "load", "severity": "minor", "summary": format!("event {n}")});
                let response = client
                    .post(format!("{base}/api/v1/events"))
                    .json(&body)
                    .send()
                    .await
                    .expect("POST");
                assert_eq!(response.status().as_u16(), 202);
                let answer: Value = response.json().await.expect("json");
                let id = answer["ids"][0].as_str().expect("id").to_owned();
                acked.lock().expect("lock").push(id);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before: Vec<String> = acked.lock().expect("lock").clone();
    assert!(before.len() > 10, "events flowed before the backup");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("backup.db");
    let data = server.data_dir();
    let (code, out, err) = vakt(&[
        "backup",
        "--data-dir",
        data.to_str().expect("utf-8"),
        file.to_str().expect("utf-8"),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backed up"), "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(true).expect("stop");
    sender.await.expect("sender");
    assert!(
        acked.lock().expect("lock").len() > before.len(),
        "ingest went on during the backup"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("backup")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the backup is private: {mode:o}");
    }
    // A second backup to the same file is refused: a backup never overwrites.
    let (code, _, err) = vakt(&[
        "backup",
        "--data-dir",
        data.to_str().expect("utf-8"),
        file.to_str().expect("utf-8"),
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists"), "{err}");

    // Restore as docs/operations.md says: the file becomes vakt.db of a new data directory.
    let mut restored = TestServer::start().await;
    restored.stop().await;
    let target = restored.data_dir();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(target.join(format!("vakt.db{suffix}")));
    }
    std::fs::copy(&file, target.join("vakt.db")).expect("restore");
    restored.boot(true, None).await;
    for id in &before {
        let (status, _) = restored.get(&format!("/api/v1/events/{id}")).await;
        assert_eq!(
            status, 200,
            "event {id}, acknowledged before the backup, is restored"
        );
    }
}

/// `vakt db stats` counts rows and bytes per table; `--json` for scripts; `vakt db vacuum`
/// and `vakt db prune` run beside the server.
#[tokio::test]
async fn db_stats_prune_and_vacuum_work_from_the_command_line() {
    let server = TestServer::start().await;
    for n in 0..7 {
        let (status, _) = server
            .post("/api/v1/events", &json!({"resource": format!("r{n}"), "check": "c", "severity": "minor", "summary": "s"}))
            .await;
        assert_eq!(status, 202);
    }
    // A command in another process sees what the server has applied to the database, a
    // few milliseconds behind its answers and more on a busy machine (docs/configuration.md):
    // a read through the server first makes it apply everything it acknowledged.
    let (status, _) = server.get("/api/v1/events?limit=1").await;
    assert_eq!(status, 200);
    let data = server.data_dir();
    let data = data.to_str().expect("utf-8");
    let (code, out, err) = vakt(&["db", "stats", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    let events_line = out
        .lines()
        .find(|l| l.starts_with("events "))
        .unwrap_or_else(|| panic!("no events line in {out}"));
    assert!(events_line.split_whitespace().nth(1) == Some("7"), "{out}");
    let (code, out, err) = vakt(&["db", "stats", "--json", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    let stats: Value = serde_json::from_str(&out).expect("json");
    let traces = stats
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "traces"))
        .expect("traces");
    assert!(traces["bytes"].as_i64().is_some_and(|b| b > 0), "{traces}");
    let (code, out, err) = vakt(&["db", "prune", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("removed 0 rows"),
        "nothing is 30 days old: {out}"
    );
    let (code, out, err) = vakt(&["db", "vacuum", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vacuumed"), "{out}");
    let (status, _) = server.get("/api/v1/events?limit=1").await;
    assert_eq!(status, 200, "the server goes on after the vacuum");
}

/// The retention task runs in the server: over `max_bytes`, the oldest events go, and
/// `/metrics` counts them.
#[tokio::test]
async fn the_server_prunes_by_itself_when_the_database_is_over_its_size() {
    let config = builtin_on_free_ports().replace(
        "[retention]\n",
        "[retention]\nmax_bytes = 1\ninterval_secs = 1\nbatch = 5\npause_ms = 0\n",
    );
    assert!(
        config.contains("max_bytes = 1"),
        "the built-in file has [retention]"
    );
    let server = TestServer::with_config(Some(&config)).await;
    for n in 0..12 {
        server
            .post("/api/v1/events", &json!({"resource": format!("r{n}"), "check": "c", "severity": "minor", "summary": "s"}))
            .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = server.get("/api/v1/events?limit=100").await;
        if page["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events still there after 20 s: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (pruned, metrics) =
        crate::harness::metric(&server.base, "vakt_retention_pruned_total{kind=\"events\"}").await;
    let pruned = pruned.unwrap_or_else(|| panic!("no retention metric in {metrics}"));
    assert!(pruned >= 12.0, "{pruned}");
}

/// A page of large events is cut by bytes, not only by count, and its cursor continues:
/// every event is listed once across the pages (the amplification attack of issue 17).
#[tokio::test]
async fn large_pages_are_cut_by_bytes_and_the_cursor_continues() {
    let config =
        builtin_on_free_ports().replace("[server]\n", "[server]\nlist_bytes_max = 20000\n");
    let server = TestServer::with_config(Some(&config)).await;
    let blob = "x".repeat(2000);
    let mut sent = Vec::new();
    for n in 0..40 {
        let (status, body) = server
            .post("/api/v1/events", &json!({"resource": format!("r{n}"), "check": "c", "severity": "minor", "summary": "s", "details": {"blob": blob}}))
            .await;
        assert_eq!(status, 202, "{body}");
        sent.push(body["ids"][0].as_str().expect("id").to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/events?limit=1000&cursor={c}"),
            None => "/api/v1/events?limit=1000".to_owned(),
        };
        let response = server
            .client
            .get(server.url(&path))
            .send()
            .await
            .expect("GET");
        let bytes = response.bytes().await.expect("body");
        assert!(
            bytes.len() < 20000 + 4000,
            "a page of {} bytes",
            bytes.len()
        );
        let page: Value = serde_json::from_slice(&bytes).expect("json");
        let items = page["items"].as_array().expect("items");
        assert!(!items.is_empty());
        seen.extend(
            items
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned()),
        );
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(
        pages >= 4,
        "40 events of 2 KB do not fit 20 KB: {pages} pages"
    );
    sent.reverse();
    assert_eq!(seen, sent, "each event once, newest first");
}

/// One client over its write allowance gets 429 with Retry-After; reads still answer.
#[tokio::test]
async fn a_client_over_its_write_rate_is_told_to_wait() {
    let config = builtin_on_free_ports().replace(
        "[server]\n",
        "[server]\nwrite_rate_per_client = 2\nwrite_burst_per_client = 5\n",
    );
    assert!(
        config.contains("write_rate_per_client"),
        "the built-in file has [server]"
    );
    let server = TestServer::with_config(Some(&config)).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for n in 0..12 {
        let response = server
            .client
            .post(server.url("/api/v1/events"))
            .json(&json!({"resource": format!("r{n}"), "check": "c", "severity": "minor", "summary": "s"}))
            .send()
            .await
            .expect("POST");
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = response.json().await.expect("json");
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("write_rate_per_client")),
                "{body}"
            );
        }
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        (5..=7).contains(&accepted),
        "the burst and a little: {statuses:?}"
    );
    assert!(limited >= 5, "{statuses:?}");
    assert!(
        retry_after.is_some_and(|s| (1..=2).contains(&s)),
        "{retry_after:?}"
    );
    let (status, _) = server.get("/api/v1/events?limit=1").await;
    assert_eq!(status, 200, "reads are not limited");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "later", "check": "c", "severity": "minor", "summary": "s"}),
        )
        .await;
    assert_eq!(status, 202, "the allowance comes back with time");
}

/// Credentials come from the environment or a file, never from the file's text, and never
/// appear in answers; a missing variable is an error at its line.
#[tokio::test]
async fn secrets_come_from_the_environment_and_files_and_stay_hidden() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("routing-key");
    std::fs::write(&key, "R0UTING-KEY-FROM-FILE\n").expect("write");
    let config = format!(
        "{}\n[[users]]\nid = \"alice\"\nphone_webhook = \"https://sms.example.com/send?key=${{VAKT_TEST_PHONE_KEY}}\"\n\n[sources.pagerduty]\n[[sources.pagerduty.integrations]]\nname = \"db\"\nrouting_key = {{ file = {:?} }}\n",
        builtin_on_free_ports(),
        key.display().to_string()
    );
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, &config).expect("write");
    let path = path.to_str().expect("utf-8");
    // Without the variable: an error naming it, at its line.
    let (code, _, err) = vakt(&["rules", "check", "--config", path]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("environment variable VAKT_TEST_PHONE_KEY is not set"),
        "{err}"
    );
    let line = config
        .lines()
        .position(|l| l.starts_with("phone_webhook"))
        .expect("line")
        + 1;
    assert!(err.contains(&format!("vakt.toml:{line}:")), "{err}");
    // A data directory of its own: the built-in configuration's `./vakt-data` would be
    // shared with every earlier run.
    let data = dir.path().join("data");
    let node = spawn_node_with_env(
        std::path::Path::new(path),
        None,
        free_port(),
        &[
            ("VAKT_TEST_PHONE_KEY", "PH0NE-SECRET"),
            ("VAKT_DATA_DIR", data.to_str().expect("utf-8")),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let users = client
        .get(format!("{}/api/v1/users", node.base))
        .send()
        .await
        .expect("users")
        .text()
        .await
        .expect("text");
    assert!(!users.contains("PH0NE-SECRET"), "{users}");
    assert!(users.contains("https://sms.example.com/"), "{users}");
    // The key read from the file is the one PagerDuty senders must give.
    let event = |key: &str| json!({"routing_key": key, "event_action": "trigger", "payload": {"summary": "s", "source": "db01", "severity": "error"}});
    let answer = client
        .post(format!("{}/v2/enqueue", node.base))
        .json(&event("R0UTING-KEY-FROM-FILE"))
        .send()
        .await
        .expect("enqueue");
    assert_eq!(answer.status().as_u16(), 202);
    let answer = client
        .post(format!("{}/v2/enqueue", node.base))
        .json(&event("wrong"))
        .send()
        .await
        .expect("enqueue");
    assert_ne!(answer.status().as_u16(), 202);
}
