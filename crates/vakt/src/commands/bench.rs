//! `vakt bench`: a bounded load generator for a vakt (or any peer-protocol) endpoint.
//!
//! Sends a fixed number of events in one of the formats vakt accepts, with a chosen mix of
//! alerts (how many distinct fingerprints, what share are exceptions or clears), at a chosen
//! concurrency and rate, and reports events/s, request latency percentiles and errors. It
//! stops by itself, and targets loopback unless given another address.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::cli::{BenchArgs, BenchFormat, Failure};

/// Most events one run sends.
pub const EVENTS_MAX: usize = 100_000_000;

/// What a run measured.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    refused: BTreeMap<u16, usize>,
    errors: BTreeMap<String, usize>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.accepted += other.accepted;
        for (k, v) in other.refused {
            *self.refused.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.latencies.extend(other.latencies);
    }
}

/// The n-th event of the mix: `fingerprints` distinct alerts, `exceptions` of them critical
/// disk alerts (the rest warnings and info), one event in `1/ok_share` an `ok` clearing its
/// alert.
fn event(n: usize, args: &BenchArgs) -> Value {
    let fingerprints = args.fingerprints.max(1);
    let alert = n % fingerprints;
    let round = n / fingerprints;
    let clears =
        args.ok_share > 0.0 && ((round as f64 * args.ok_share).fract() + args.ok_share) >= 1.0;
    let exception = (alert as f64) < fingerprints as f64 * args.exceptions;
    let (check, severity, metrics) = if exception {
        ("disk_usage", "warning", json!({"used_pct": 97.5}))
    } else if alert.is_multiple_of(2) {
        ("cpu_load", "warning", json!({"load_per_core": 1.2}))
    } else {
        ("backup", "info", json!({}))
    };
    json!({
        "source": "vakt-bench",
        "resource": format!("{}-{alert:06}", args.host_prefix),
        "check": check,
        "severity": if clears { "ok" } else { severity },
        "summary": format!("{check} on {}-{alert:06} (event {n})", args.host_prefix),
        "environment": "bench",
        "labels": {"rack": format!("r{}", alert % 40)},
        "metrics": metrics,
    })
}

fn alertmanager(n: usize, args: &BenchArgs) -> Value {
    let e = event(n, args);
    let firing = e["severity"] != "ok";
    // 20 services, so a notification grouped by service has a few groups.
    let service = format!("svc-{:02}", n % args.fingerprints.max(1) % 20);
    json!({
        "labels": {
            "alertname": e["check"], "instance": e["resource"], "severity": if firing { e["severity"].clone() } else { json!("warning") },
            "environment": "bench", "service": service,
        },
        "annotations": {"summary": e["summary"]},
        // A resolved alert ended in the past, after it started (Alertmanager checks that).
        "startsAt": if firing { Value::Null } else { json!("2020-01-01T00:00:00Z") },
        "endsAt": if firing { "2100-01-01T00:00:00Z" } else { "2020-01-01T00:05:00Z" },
    })
}

fn pagerduty(n: usize, args: &BenchArgs) -> Value {
    let e = event(n, args);
    let clears = e["severity"] == "ok";
    json!({
        "routing_key": args.routing_key,
        "event_action": if clears { "resolve" } else { "trigger" },
        "dedup_key": format!("{}/{}", e["resource"].as_str().unwrap_or(""), e["check"].as_str().unwrap_or("")),
        "payload": {
            "summary": e["summary"], "source": e["resource"], "component": e["check"],
            "severity": if e["severity"] == "info" { "info" } else { "warning" },
        },
    })
}

fn syslog_line(n: usize, args: &BenchArgs) -> String {
    let e = event(n, args);
    // RFC 5424: <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG; PRI 27 = daemon.err, 30 = daemon.info.
    let pri = if e["severity"] == "info" || e["severity"] == "ok" {
        30
    } else {
        27
    };
    format!(
        "<{pri}>1 {} {} {} - - - {}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        e["resource"].as_str().unwrap_or("-"),
        e["check"].as_str().unwrap_or("-"),
        e["summary"].as_str().unwrap_or("-")
    )
}

/// The body of request `r` (events `first..first+count`) and its content type.
fn body(
    format: BenchFormat,
    first: usize,
    count: usize,
    args: &BenchArgs,
) -> (Vec<u8>, &'static str, &'static str) {
    let range = first..first + count;
    match format {
        BenchFormat::Json => (
            event(first, args).to_string().into_bytes(),
            "application/json",
            "/api/v1/events",
        ),
        BenchFormat::Batch => (
            Value::Array(range.map(|n| event(n, args)).collect())
                .to_string()
                .into_bytes(),
            "application/json",
            "/api/v1/events",
        ),
        BenchFormat::Ndjson => {
            let mut out = String::new();
            for n in range {
                out.push_str(&event(n, args).to_string());
                out.push('\n');
            }
            (out.into_bytes(), "application/x-ndjson", "/api/v1/events")
        }
        BenchFormat::Alertmanager => (
            Value::Array(range.map(|n| alertmanager(n, args)).collect())
                .to_string()
                .into_bytes(),
            "application/json",
            "/api/v2/alerts",
        ),
        BenchFormat::Pagerduty => (
            pagerduty(first, args).to_string().into_bytes(),
            "application/json",
            "/v2/enqueue",
        ),
        BenchFormat::SyslogUdp | BenchFormat::SyslogTcp => (Vec::new(), "", ""),
    }
}

/// Events per request for a format.
fn per_request(format: BenchFormat, batch: usize) -> usize {
    match format {
        BenchFormat::Json
        | BenchFormat::Pagerduty
        | BenchFormat::SyslogUdp
        | BenchFormat::SyslogTcp => 1,
        BenchFormat::Batch | BenchFormat::Ndjson | BenchFormat::Alertmanager => batch.max(1),
    }
}

/// Waits until `sent` events are due at `rate` per second (0: no limit).
async fn pace(started: Instant, sent: usize, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

pub fn run(args: BenchArgs) -> Result<(), Failure> {
    if args.events == 0 || args.events > EVENTS_MAX {
        return Err(Failure::user(anyhow!("--events must be 1 to {EVENTS_MAX}")));
    }
    if !(0.0..=1.0).contains(&args.exceptions) || !(0.0..=1.0).contains(&args.ok_share) {
        return Err(Failure::user(anyhow!(
            "--exceptions and --ok-share are shares between 0 and 1"
        )));
    }
    if args.concurrency == 0 || args.concurrency > 1024 {
        return Err(Failure::user(anyhow!("--concurrency must be 1 to 1024")));
    }
    let runtime = super::access::threaded_runtime(None)?;
    runtime.block_on(run_async(args))
}

fn target_for(args: &BenchArgs) -> String {
    args.target.clone().unwrap_or_else(|| match args.format {
        BenchFormat::SyslogUdp => "udp://127.0.0.1:5514".to_owned(),
        BenchFormat::SyslogTcp => "tcp://127.0.0.1:5514".to_owned(),
        _ => "http://127.0.0.1:8470".to_owned(),
    })
}

async fn run_async(args: BenchArgs) -> Result<(), Failure> {
    let args = Arc::new(args);
    let target = target_for(&args);
    let per = per_request(args.format, args.batch);
    let requests = args.events.div_ceil(per);
    let progress = indicatif::ProgressBar::new(args.events as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    match args.format {
        BenchFormat::SyslogUdp | BenchFormat::SyslogTcp => {
            let address = target
                .split_once("://")
                .map(|(_, a)| a.to_owned())
                .ok_or_else(|| {
                    Failure::user(anyhow!(
                        "--target {target:?}: expected udp://HOST:PORT or tcp://HOST:PORT"
                    ))
                })?;
            for _ in 0..args.concurrency {
                let (args, next, sent, progress, address) = (
                    Arc::clone(&args),
                    Arc::clone(&next),
                    Arc::clone(&sent),
                    progress.clone(),
                    address.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let tcp = args.format == BenchFormat::SyslogTcp;
                    let mut stream = None;
                    let mut socket = None;
                    if tcp {
                        match tokio::net::TcpStream::connect(&address).await {
                            Ok(s) => stream = Some(s),
                            Err(e) => {
                                *tally
                                    .errors
                                    .entry(format!("connect {address}: {e}"))
                                    .or_default() += 1;
                                return tally;
                            }
                        }
                    } else {
                        match tokio::net::UdpSocket::bind("0.0.0.0:0").await {
                            Ok(s) => socket = Some(s),
                            Err(e) => {
                                *tally.errors.entry(format!("udp socket: {e}")).or_default() += 1;
                                return tally;
                            }
                        }
                    }
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= args.events {
                            break;
                        }
                        pace(started, sent.fetch_add(1, Ordering::Relaxed), args.rate).await;
                        let line = syslog_line(n, &args);
                        let result = match (&mut stream, &socket) {
                            (Some(stream), _) => {
                                stream.write_all(format!("{line}\n").as_bytes()).await
                            }
                            (None, Some(socket)) => {
                                socket.send_to(line.as_bytes(), &address).await.map(|_| ())
                            }
                            (None, None) => Ok(()),
                        };
                        match result {
                            Ok(()) => tally.accepted += 1,
                            Err(e) => *tally.errors.entry(e.to_string()).or_default() += 1,
                        }
                        progress.inc(1);
                    }
                    if let Some(mut stream) = stream {
                        let _ = stream.shutdown().await;
                    }
                    tally
                }));
            }
        }
        _ => {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(token) = args.credential.token().map_err(Failure::user)? {
                let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))
                    .context("the token cannot be sent in an HTTP header")
                    .map_err(Failure::user)?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            let client = args
                .credential
                .client()
                .map_err(Failure::user)?
                .default_headers(headers)
                .timeout(Duration::from_secs(args.timeout_secs))
                .build()
                .context("cannot build an HTTP client")
                .map_err(Failure::internal)?;
            let base = target.trim_end_matches('/').to_owned();
            for _ in 0..args.concurrency {
                let (args, next, sent, progress, client, base) = (
                    Arc::clone(&args),
                    Arc::clone(&next),
                    Arc::clone(&sent),
                    progress.clone(),
                    client.clone(),
                    base.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut tally = Tally::default();
                    loop {
                        let r = next.fetch_add(1, Ordering::Relaxed);
                        if r >= requests {
                            break;
                        }
                        let first = r * per;
                        let count = per.min(args.events - first);
                        pace(started, sent.fetch_add(count, Ordering::Relaxed), args.rate).await;
                        let (body, content_type, path) = body(args.format, first, count, &args);
                        let at = Instant::now();
                        let result = client
                            .post(format!("{base}{path}"))
                            .header("content-type", content_type)
                            .body(body)
                            .send()
                            .await;
                        match result {
                            Ok(response) => {
                                let status = response.status();
                                let _ = response.bytes().await;
                                tally.latencies.push(at.elapsed());
                                if status.is_success() {
                                    tally.accepted += count;
                                } else {
                                    *tally.refused.entry(status.as_u16()).or_default() += count;
                                }
                            }
                            Err(e) => {
                                let kind = if e.is_connect() {
                                    "cannot connect".to_owned()
                                } else if e.is_timeout() {
                                    "timeout".to_owned()
                                } else {
                                    e.to_string()
                                };
                                *tally.errors.entry(kind).or_default() += count;
                            }
                        }
                        progress.inc(count as u64);
                    }
                    tally
                }));
            }
        }
    }
    let mut tally = Tally::default();
    for task in tasks {
        if let Ok(part) = task.await {
            tally.merge(part);
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    report(&args, &target, &mut tally, elapsed);
    let failed: usize = tally.errors.values().sum();
    let refused: usize = tally.refused.values().sum();
    if tally.accepted == 0 && failed > 0 {
        Err(Failure::internal(anyhow!("no event reached {target}")))
    } else if refused > 0 || failed > 0 {
        Err(Failure::user(anyhow!(
            "{refused} events refused, {failed} failed"
        )))
    } else {
        Ok(())
    }
}

fn report(args: &BenchArgs, target: &str, tally: &mut Tally, elapsed: Duration) {
    tally.latencies.sort();
    let pct = |p: f64| -> f64 {
        tally
            .latencies
            .get(((tally.latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rate = tally.accepted as f64 / elapsed.as_secs_f64().max(1e-9);
    let summary = json!({
        "target": target,
        "format": format!("{:?}", args.format).to_lowercase(),
        "events": args.events,
        "accepted": tally.accepted,
        "refused": tally.refused,
        "errors": tally.errors,
        "seconds": elapsed.as_secs_f64(),
        "events_per_second": rate,
        "requests": tally.latencies.len(),
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
    });
    if args.json {
        println!("{summary}");
        return;
    }
    println!(
        "{} {} events to {target}: {} accepted in {:.2} s = {:.0} events/s",
        args.events,
        summary["format"].as_str().unwrap_or(""),
        tally.accepted,
        elapsed.as_secs_f64(),
        rate
    );
    if !tally.latencies.is_empty() {
        println!(
            "{} requests; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            tally.latencies.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
    }
    for (status, n) in &tally.refused {
        println!("refused with {status}: {n} events");
    }
    for (error, n) in &tally.errors {
        println!("failed ({error}): {n} events");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["vakt", "bench"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(crate::cli::Command::Bench(args)) => args,
            other => panic!("not a bench command: {other:?}"),
        }
    }

    #[test]
    fn the_mix_has_the_asked_shares() {
        let a = args(&[
            "--events",
            "1000",
            "--fingerprints",
            "100",
            "--exceptions",
            "0.2",
            "--ok-share",
            "0.1",
        ]);
        let events: Vec<Value> = (0..1000).map(|n| event(n, &a)).collect();
        let resources: std::collections::BTreeSet<&str> = events
            .iter()
            .filter_map(|e| e["resource"].as_str())
            .collect();
        assert_eq!(resources.len(), 100);
        let disks = events.iter().filter(|e| e["check"] == "disk_usage").count();
        assert_eq!(disks, 200);
        let oks = events.iter().filter(|e| e["severity"] == "ok").count();
        assert_eq!(oks, 100, "one round in ten clears");
        for e in &events {
            assert!(
                vakt_core::EventInput::from_json(0, e.clone()).is_ok(),
                "{e}"
            );
        }
    }

    #[test]
    fn the_default_target_is_loopback_for_every_format() {
        for format in [
            "json",
            "batch",
            "ndjson",
            "alertmanager",
            "pagerduty",
            "syslog-udp",
            "syslog-tcp",
        ] {
            let target = target_for(&args(&["--format", format]));
            assert!(target.contains("://127.0.0.1:"), "{format}: {target}");
        }
    }
}
