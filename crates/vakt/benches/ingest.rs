//! End-to-end ingest benchmark: HTTP batches of 1,000 events into a real server on SQLite (`cargo bench -p vakt --bench ingest`).
//!
//! Starts vakt in-process on 127.0.0.1:0 with a fresh SQLite data directory and the built-in
//! configuration, then posts pre-serialised batches from several concurrent connections and
//! reports accepted events per second and request latency. Client and server share the
//! machine, as they would on a 2-core box. Environment: `VAKT_BENCH_EVENTS` (default
//! 200000), `VAKT_BENCH_BATCH` (1000), `VAKT_BENCH_CONNECTIONS` (4), `VAKT_BENCH_FINGERPRINTS`
//! (10000), `VAKT_DATABASE_URL` to run against PostgreSQL instead. Each alert keeps its
//! severity; one event in ten is an `ok` that clears its alert (to be reopened by the next).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;
use vakt::config::{Config, Overrides};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test --benches` runs bench targets once with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let total = if quick {
        2_000
    } else {
        env("VAKT_BENCH_EVENTS", 200_000)
    };
    let batch = env("VAKT_BENCH_BATCH", 1000);
    let connections = env("VAKT_BENCH_CONNECTIONS", 4);
    let fingerprints = env("VAKT_BENCH_FINGERPRINTS", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(total, batch, connections, fingerprints));
}

async fn run(total: usize, batch: usize, connections: usize, fingerprints: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let overrides = Overrides {
        listen: None,
        data_dir: Some(dir.path().join("data")),
        database_url: std::env::var("VAKT_DATABASE_URL").ok(),
    };
    let config = Config::load(None, &overrides).expect("built-in config");
    let storage = config.location.describe();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = vakt::server::launch_with_listener(listener, config, overrides)
        .await
        .expect("server");
    let url = format!("http://{}/api/v1/events", server.addr);

    // Pre-serialised bodies: the client should cost as little as possible.
    let bodies: Vec<bytes_body::Body> = (0..16)
        .map(|b| {
            let events: Vec<_> = (0..batch)
                .map(|i| {
                    // n names the alert: resource and check (so its severity) follow from it, and
                    // one event in ten is the `ok` that clears it.
                    let n = (b * batch + i) % fingerprints.max(1);
                    let clears = ((b * batch + i) / fingerprints.max(1)) % 10 == 9;
                    const CHECKS: [&str; 5] = ["disk_usage", "cpu_load", "ping", "http", "memory"];
                    const SEVERITIES: [&str; 5] = ["warning", "critical", "major", "info", "minor"];
                    json!({
                        "resource": format!("host{:05}", n / 5),
                        "check": CHECKS[n % 5],
                        "severity": if clears { "ok" } else { SEVERITIES[(n / 5) % 5] },
                        "summary": "benchmark event with a summary of ordinary length",
                        "environment": "production",
                        "labels": {"dc": "sto1", "rack": format!("r{}", n % 40)},
                        "metrics": {"used_pct": (n % 100) as f64, "load_per_core": (n % 7) as f64},
                    })
                })
                .collect();
            bytes_body::Body(serde_json::to_vec(&events).expect("json"))
        })
        .collect();
    let requests = total.div_ceil(batch);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let client = client.clone();
        let url = url.clone();
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0usize;
            let mut r = c;
            while r < requests {
                let body = bodies[r % bodies.len()].0.clone();
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                let status = response.status();
                let _ = response.bytes().await;
                latencies.push(sent.elapsed());
                if status.as_u16() == 202 {
                    accepted += batch;
                } else if status.as_u16() == 429 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                } else {
                    panic!("unexpected status {status}");
                }
                r += connections;
            }
            (accepted, latencies)
        }));
    }
    let mut accepted = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (n, mut l) = task.await.expect("client task");
        accepted += n;
        latencies.append(&mut l);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "ingest {storage}: {accepted} events in {:.2} s = {:.0} events/s; batches of {batch} over {connections} connections, {fingerprints} fingerprints; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let metrics = client
        .get(url.replace("/api/v1/events", "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    println!(
        "  writer busy {:.2} s in {} commits ({:.0} events each); stateless stages {:.2} s",
        value("vakt_store_commit_seconds_sum"),
        value("vakt_store_commit_seconds_count"),
        value("vakt_store_commit_batch_events_sum")
            / value("vakt_store_commit_batch_events_count").max(1.0),
        value("vakt_pipeline_seconds_sum"),
    );
    server.shutdown();
    server.wait().await.expect("shutdown");
    if std::env::var("VAKT_BENCH_KEEP").is_ok() {
        println!("data kept in {}", dir.keep().display());
    }
}

mod bytes_body {
    //! A cheaply clonable request body.
    #[derive(Clone)]
    pub struct Body(pub Vec<u8>);
}
