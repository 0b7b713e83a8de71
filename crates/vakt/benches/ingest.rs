//! End-to-end ingest benchmark: events into a real server on SQLite over HTTP, the Alertmanager API or syslog (`cargo bench -p vakt --bench ingest`).
//!
//! Starts vakt in-process on 127.0.0.1:0 with a fresh SQLite data directory and the built-in
//! configuration, then posts pre-serialised batches from several concurrent connections and
//! reports accepted events per second and request latency. Client and server share the
//! machine, as they would on a 2-core box. Environment: `VAKT_BENCH_EVENTS` (default
//! 200000), `VAKT_BENCH_BATCH` (1000), `VAKT_BENCH_CONNECTIONS` (4), `VAKT_BENCH_FINGERPRINTS`
//! (10000), `VAKT_DATABASE_URL` to run against PostgreSQL instead, and `VAKT_BENCH_MODE`:
//! `json` (default), `alertmanager` (`POST /api/v2/alerts`), `syslog-tcp` or `syslog-udp`
//! (RFC 5424 lines; the figure is events stored per second). Each alert keeps its
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
    let mode = std::env::var("VAKT_BENCH_MODE").unwrap_or_else(|_| "json".to_owned());
    let text = vakt::config::BUILTIN
        .replace("127.0.0.1:5514", "127.0.0.1:0")
        .replace("127.0.0.1:1162", "127.0.0.1:0")
        .replace(
            "[sources.syslog]\n",
            "[sources.syslog]\nqueue_events_max = 100000\n",
        )
        // This bench measures ingest; `--bench dispatch` measures the actions.
        .replace("[dispatch]\n", "[dispatch]\nenabled = false\n");
    let config = Config::parse("bench", &text, None, &overrides).expect("bench config");
    let storage = config.location.describe();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = vakt::server::launch_with_listener(listener, config, overrides)
        .await
        .expect("server");
    let url = format!("http://{}/api/v1/events", server.addr);
    if mode.starts_with("syslog") {
        syslog(&server, &mode, total, connections, fingerprints).await;
        server.shutdown();
        server.wait().await.expect("shutdown");
        return;
    }
    let url = if mode == "alertmanager" {
        url.replace("/api/v1/events", "/api/v2/alerts")
    } else {
        url
    };

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
                    if mode == "alertmanager" {
                        return json!({
                            "labels": {
                                "alertname": CHECKS[n % 5],
                                "instance": format!("host{:05}", n / 5),
                                "severity": SEVERITIES[(n / 5) % 5],
                                "environment": "production",
                                "rack": format!("r{}", n % 40),
                            },
                            "annotations": {"summary": "benchmark alert with a summary of ordinary length"},
                            "startsAt": if clears { Some("2019-12-31T23:00:00Z") } else { None },
                            "endsAt": if clears { "2020-01-01T00:00:00Z" } else { "2100-01-01T00:00:00Z" },
                        });
                    }
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
                if status.is_success() {
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
        "ingest {mode} {storage}: {accepted} events in {:.2} s = {:.0} events/s; batches of {batch} over {connections} connections, {fingerprints} fingerprints; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let metrics = client
        .get(format!("http://{}/metrics", server.addr))
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

/// Events stored so far, from /metrics.
async fn stored(client: &reqwest::Client, base: &str) -> (f64, f64) {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .fold(0.0, |a, b| a + b)
    };
    (
        sum("vakt_events_stored_total"),
        sum("vakt_events_rejected_total{channel=\"syslog\""),
    )
}

/// Streams RFC 5424 lines over TCP (one task per connection) or UDP, and waits until
/// vakt has stored what it accepted.
async fn syslog(
    server: &vakt::server::Server,
    mode: &str,
    total: usize,
    connections: usize,
    fingerprints: usize,
) {
    use tokio::io::AsyncWriteExt;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let line = |i: usize| {
        let n = i % fingerprints.max(1);
        format!(
            "<11>1 2026-11-24T08:00:00Z host{:05} app{} - - - benchmark syslog message of ordinary length {i}\n",
            n / 5,
            n % 5
        )
    };
    let started = Instant::now();
    if mode == "syslog-tcp" {
        let target = server.sources.syslog_tcp[0];
        let per = total / connections;
        let mut tasks = Vec::new();
        for c in 0..connections {
            let body: String = (c * per..(c + 1) * per).map(line).collect();
            tasks.push(tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(target)
                    .await
                    .expect("connect");
                stream.write_all(body.as_bytes()).await.expect("write");
                stream.shutdown().await.expect("close");
            }));
        }
        for task in tasks {
            task.await.expect("sender");
        }
    } else {
        let target = server.sources.syslog_udp[0];
        // VAKT_BENCH_RATE datagrams/s (default: as fast as the sender can).
        let rate = env("VAKT_BENCH_RATE", 0);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        for i in 0..total {
            socket
                .send_to(line(i).as_bytes(), target)
                .await
                .expect("send");
            if rate > 0 && i % 100 == 99 {
                let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    let sent = started.elapsed();
    let expected = if mode == "syslog-tcp" {
        (total / connections * connections) as f64
    } else {
        total as f64
    };
    // Until everything is accounted for, or nothing has moved for a second.
    let (mut done, mut dropped) = (0.0, 0.0);
    let mut elapsed = started.elapsed();
    let mut still = 0;
    for _ in 0..600 {
        let (now_done, now_dropped) = stored(&client, &base).await;
        if now_done > done {
            elapsed = started.elapsed();
            still = 0;
        } else {
            still += 1;
        }
        (done, dropped) = (now_done, now_dropped);
        if done + dropped >= expected || still >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kernel = {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| {
                l.strip_prefix("vakt_udp_kernel_drops{channel=\"syslog\"} ")
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    println!(
        "ingest {mode}: {done} of {expected} messages stored in {:.2} s = {:.0} events/s (sent in {:.2} s; {dropped:.0} refused by a full queue, {kernel:.0} dropped by the kernel, both counted)",
        elapsed.as_secs_f64(),
        done / elapsed.as_secs_f64(),
        sent.as_secs_f64(),
    );
}

mod bytes_body {
    //! A cheaply clonable request body.
    #[derive(Clone)]
    pub struct Body(pub Vec<u8>);
}
