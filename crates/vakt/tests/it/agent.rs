//! `vakt agent` end to end: its probe events reach the server; while the server is down they
//! wait in the on-disk buffer; when it is back they all arrive, in order, none twice; the
//! agent's heartbeat is known to the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::actions::eventually;
use crate::harness::{free_port, spawn_node_on};

/// The probe's sequence numbers as the server stored them, in the order it stored them.
async fn sequence(port: u16) -> Vec<i64> {
    let page: Value = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/v1/events?check=counter&limit=1000"
    ))
    .await
    .expect("GET")
    .json()
    .await
    .expect("json");
    let mut items = page["items"].as_array().cloned().unwrap_or_default();
    items.reverse(); // newest first -> oldest first
    items
        .iter()
        .filter_map(|e| {
            e["event"]["metrics"]["seq"]
                .as_f64()
                .or_else(|| e["metrics"]["seq"].as_f64())
        })
        .map(|v| v as i64)
        .collect()
}

/// Lines in the agent's buffer files (one current generation, `events*.ndjson`).
fn buffered_lines(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ndjson"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A plugin that counts its runs and alternates ok / warning: every run is a change, so
/// every run is one event, numbered in its perfdata. Returns the script and its counter.
fn counter_plugin(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let counter = dir.join("count");
    let script = dir.join("counter.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > {c}\necho \"run $n|seq=$n\"\nexit $((n % 2))\n",
            c = counter.display()
        ),
    )
    .expect("script");
    let _ = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status();
    (script, counter)
}

/// A TCP relay to `upstream` that holds every answer back for `delay_ms` (while that is
/// not zero): the request reaches the server at once, its answer comes late.
async fn slow_relay(upstream: u16, delay_ms: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let delay_ms = Arc::clone(&delay_ms);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let delay = delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    port
}

/// Issue 13: when the server's 202 comes back after the agent's timeout (a slow relay),
/// the agent sends the batch again; the events' idempotency keys make the server store
/// each once, and the order holds.
#[tokio::test]
async fn answers_that_come_too_late_cause_no_duplicates_and_no_reordering() {
    let work = tempfile::tempdir().expect("dir");
    let port = free_port();
    let server_config = work.path().join("server.toml");
    std::fs::write(
        &server_config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n",
            work.path().join("data").display()
        ),
    )
    .expect("config");
    let (script, _counter) = counter_plugin(work.path());
    let delay_ms = Arc::new(AtomicU64::new(2_500));
    let _server = spawn_node_on(&server_config, None, port).await;
    let relay = slow_relay(port, Arc::clone(&delay_ms)).await;
    let agent_config = work.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
name = "web2"
server = "http://127.0.0.1:{relay}"
buffer_dir = "{buffer}"
heartbeat_secs = 60
request_timeout_secs = 1

[[probes]]
name = "counter"
type = "command"
command = ["{script}"]
interval_secs = 1
"#,
            buffer = work.path().join("buffer").display(),
            script = script.display()
        ),
    )
    .expect("agent config");
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["agent", "--config"])
        .arg(&agent_config)
        .env("VAKT_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("agent starts");
    // Every answer is late for a while: the agent times out and sends again, and again.
    eventually(
        30,
        "several events stored while answers are late",
        || async { (sequence(port).await.len() >= 4).then_some(()) },
    )
    .await;
    delay_ms.store(0, Ordering::SeqCst);
    let got = eventually(
        30,
        "the backlog delivered once answers are on time",
        || async {
            let got = sequence(port).await;
            (got.len() >= 8 && buffered_lines(&work.path().join("buffer")) == 0).then_some(got)
        },
    )
    .await;
    let _ = agent.kill().await;
    let expected: Vec<i64> = (1..=got.len() as i64).collect();
    assert_eq!(got, expected, "every run once, in order");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    let duplicates: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vakt_events_duplicate_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        duplicates >= 1.0,
        "the agent did send batches again (else this test proves nothing): {duplicates}"
    );
}

#[tokio::test]
async fn the_agent_buffers_while_the_server_is_down_and_delivers_in_order() {
    let work = tempfile::tempdir().expect("dir");
    let port = free_port();
    let server_config = work.path().join("server.toml");
    std::fs::write(
        &server_config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n",
            work.path().join("data").display()
        ),
    )
    .expect("config");
    let (script, counter) = counter_plugin(work.path());
    let agent_config = work.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
name = "web1"
server = "http://127.0.0.1:{port}"
buffer_dir = "{buffer}"
heartbeat_secs = 1

[[probes]]
name = "counter"
type = "command"
command = ["{script}"]
interval_secs = 1
"#,
            buffer = work.path().join("buffer").display(),
            script = script.display()
        ),
    )
    .expect("agent config");

    let mut server = spawn_node_on(&server_config, None, port).await.child;
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["agent", "--config"])
        .arg(&agent_config)
        .env("VAKT_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("agent starts");
    eventually(20, "the first events arrive", || async {
        (sequence(port).await.len() >= 2).then_some(())
    })
    .await;
    // The agent's heartbeat is known to the server.
    let beats: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/heartbeats"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert!(beats.to_string().contains("agent-web1"), "{beats}");

    // The server goes away; the agent keeps measuring into its buffer.
    let _ = server.kill().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let runs_while_down = std::fs::read_to_string(&counter)
        .unwrap_or_default()
        .trim()
        .parse::<i64>()
        .unwrap_or(0);
    let buffered = buffered_lines(&work.path().join("buffer"));
    assert!(
        buffered >= 2,
        "events wait on disk while the server is down ({buffered})"
    );

    let _server = spawn_node_on(&server_config, None, port).await;
    let got = eventually(30, "the buffered events delivered", || async {
        let got = sequence(port).await;
        (got.last().copied().unwrap_or(0) >= runs_while_down).then_some(got)
    })
    .await;
    // The server's catalogue lists the agent (its heartbeat back on time after the outage)
    // and the probe it reported.
    let monitors: Value = eventually(10, "the agent's heartbeat on time again", || async {
        let monitors: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/monitors"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let items = monitors["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .any(|m| m["name"] == "agent-web1" && m["type"] == "agent" && m["status"] == "ok")
            .then_some(monitors)
    })
    .await;
    let items = monitors["items"].as_array().cloned().unwrap_or_default();
    assert!(
        items.iter().any(|m| m["name"] == "counter"
            && m["by"] == "web1"
            && m["metrics"]["seq"].is_number()),
        "{monitors}"
    );
    let _ = agent.kill().await;
    // In order, none missing, none twice.
    let expected: Vec<i64> = (1..=got.len() as i64).collect();
    assert_eq!(got, expected, "every run once, in order");
}

/// Against a server that requires auth, an agent without its token is refused (401) and
/// keeps every event in its buffer; given the token, it delivers them all, in order.
#[tokio::test]
async fn an_agent_without_its_token_keeps_its_events_until_it_has_one() {
    let work = tempfile::tempdir().expect("dir");
    let port = free_port();
    let data = work.path().join("data");
    let server_config = work.path().join("server.toml");
    std::fs::write(
        &server_config,
        format!(
            "[server]\nauth = \"required\"\n\n[storage]\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .expect("config");
    let make_token = |name: &str, role: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args([
                "token", "create", "--name", name, "--role", role, "--config",
            ])
            .arg(&server_config)
            .output()
            .expect("vakt token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let ingest = make_token("web1-agent", "ingest");
    let reader = make_token("reader", "viewer");
    let (script, counter) = counter_plugin(work.path());
    let agent_config = work.path().join("agent.toml");
    let write_agent = |token: Option<&str>| {
        let token = token
            .map(|t| format!("token = \"{t}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            &agent_config,
            format!(
                "[agent]\nname = \"web1\"\nserver = \"http://127.0.0.1:{port}\"\nbuffer_dir = \"{buffer}\"\n{token}\n[[probes]]\nname = \"counter\"\ntype = \"command\"\ncommand = [\"{script}\"]\ninterval_secs = 1\n",
                buffer = work.path().join("buffer").display(),
                script = script.display()
            ),
        )
        .expect("agent config");
    };
    let _server = spawn_node_on(&server_config, None, port).await;
    let stored = async || -> Vec<i64> {
        let page: Value = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{port}/api/v1/events?check=counter&limit=1000"
            ))
            .bearer_auth(&reader)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        let mut items = page["items"].as_array().cloned().unwrap_or_default();
        items.reverse();
        items
            .iter()
            .filter_map(|e| {
                e["event"]["metrics"]["seq"]
                    .as_f64()
                    .or_else(|| e["metrics"]["seq"].as_f64())
            })
            .map(|v| v as i64)
            .collect()
    };

    write_agent(None);
    let spawn_agent = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(["agent", "--config"])
            .arg(&agent_config)
            .env("VAKT_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("agent starts")
    };
    let mut agent = spawn_agent();
    eventually(20, "events wait in the buffer", || async {
        (buffered_lines(&work.path().join("buffer")) >= 3).then_some(())
    })
    .await;
    assert!(
        stored().await.is_empty(),
        "nothing got in without the token"
    );
    let _ = agent.kill().await;
    let runs = std::fs::read_to_string(&counter)
        .unwrap_or_default()
        .trim()
        .parse::<i64>()
        .unwrap_or(0);

    write_agent(Some(&ingest));
    let _agent = spawn_agent();
    let got = eventually(30, "the buffered events delivered", || async {
        let got = stored().await;
        (got.last().copied().unwrap_or(0) >= runs).then_some(got)
    })
    .await;
    let expected: Vec<i64> = (1..=got.len() as i64).collect();
    assert_eq!(got, expected, "every event once, in order");
}
