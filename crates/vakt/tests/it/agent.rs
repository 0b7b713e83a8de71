//! `vakt agent` end to end: its probe events reach the server; while the server is down they
//! wait in the on-disk buffer; when it is back they all arrive, in order, none twice; the
//! agent's heartbeat is known to the server.

use std::time::Duration;

use serde_json::Value;

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
    // A plugin that counts its runs and alternates ok / warning: every run is a change, so
    // every run is one event, numbered in its perfdata.
    let counter = work.path().join("count");
    let script = work.path().join("counter.sh");
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
    let buffered = std::fs::read_to_string(work.path().join("buffer/events.ndjson"))
        .unwrap_or_default()
        .lines()
        .count();
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
