//! Dispatch benchmark: decided webhook actions delivered to a local receiver (`cargo bench -p vakt --bench dispatch`).
//!
//! Starts vakt in-process on SQLite with one rule that calls a webhook for every new alert,
//! and an HTTP receiver on loopback that notes when each action (by its idempotency key)
//! arrives. Posts `VAKT_BENCH_ACTIONS` (default 20000) events for as many alerts, at
//! `VAKT_BENCH_RATE` events/s (default: as fast as accepted), and reports actions delivered
//! per second and decision-to-delivery latency (the action's `decided_at` to its arrival at
//! the receiver) p50/p90/p99/max. `VAKT_BENCH_CONCURRENCY` sets `dispatch.concurrency` (default 32, as in the configuration).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
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

type Arrivals = Arc<Mutex<HashMap<String, DateTime<Utc>>>>;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let total = if quick {
        200
    } else {
        env("VAKT_BENCH_ACTIONS", 20_000)
    };
    let rate = env("VAKT_BENCH_RATE", 0);
    let concurrency = env("VAKT_BENCH_CONCURRENCY", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(total, rate, concurrency));
}

async fn run(total: usize, rate: usize, concurrency: usize) {
    let arrivals: Arrivals = Arc::default();
    let receiver = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let receiver_url = format!("http://{}/hook", receiver.local_addr().expect("addr"));
    let app =
        axum::Router::new()
            .fallback(
                |axum::extract::State(arrivals): axum::extract::State<Arrivals>,
                 headers: HeaderMap| async move {
                    let now = Utc::now();
                    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok())
                    {
                        arrivals.lock().expect("lock").insert(key.to_owned(), now);
                    }
                    "ok"
                },
            )
            .with_state(Arc::clone(&arrivals));
    tokio::spawn(async move {
        let _ = axum::serve(receiver, app).await;
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let overrides = Overrides {
        listen: None,
        data_dir: Some(dir.path().join("data")),
        database_url: std::env::var("VAKT_DATABASE_URL").ok(),
    };
    let text = format!(
        r#"
[dispatch]
concurrency = {concurrency}
poll_interval_ms = 100

[[rules]]
name = "hook-every-alert"
when = 'severity == "critical"'
actions = ["hook"]

[actions.hook]
type = "webhook"
url = "{receiver_url}"
"#
    );
    let config = Config::parse("bench", &text, None, &overrides).expect("bench config");
    let storage = config.location.describe();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = vakt::server::launch_with_listener(listener, config, overrides)
        .await
        .expect("server");
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let batch = if rate > 0 { (rate / 10).max(1) } else { 500 };
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = batch.min(total - sent);
        let events: Vec<Value> = (sent..sent + n)
            .map(|i| json!({"resource": format!("host{i}"), "check": "http", "severity": "critical", "summary": "down"}))
            .collect();
        let response = client
            .post(format!("{base}/api/v1/events"))
            .json(&events)
            .send()
            .await
            .expect("post");
        assert!(response.status().is_success(), "{}", response.status());
        sent += n;
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let posted = started.elapsed();
    loop {
        let done = arrivals.lock().expect("lock").len();
        if done >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {total} delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered_in = started.elapsed();
    // Decision times from the API.
    let mut decided: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/actions?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().into_iter().flatten() {
            if let (Some(id), Some(at)) = (
                item["id"].as_str(),
                item["decided_at"].as_str().and_then(|t| t.parse().ok()),
            ) {
                decided.insert(id.to_owned(), at);
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let arrivals = arrivals.lock().expect("lock").clone();
    let mut latencies: Vec<i64> = arrivals
        .iter()
        .filter_map(|(id, at)| decided.get(id).map(|d| (*at - *d).num_milliseconds()))
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "dispatch bench: {total} webhook actions, {storage}, concurrency {concurrency}, offered {}",
        if rate > 0 {
            format!("{rate} events/s")
        } else {
            "as fast as accepted".to_owned()
        }
    );
    println!(
        "events posted in {:.2} s; all actions delivered after {:.2} s: {:.0} actions/s",
        posted.as_secs_f64(),
        delivered_in.as_secs_f64(),
        total as f64 / delivered_in.as_secs_f64()
    );
    println!(
        "decision-to-delivery latency: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} matched)",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        latencies.len()
    );
    server.shutdown();
    server.wait().await.expect("shutdown");
}
