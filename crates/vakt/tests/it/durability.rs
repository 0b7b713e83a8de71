//! Durability under abuse: kill -9 during sustained ingest (five times), a flooded ingest
//! queue, a full and a read-only disk. What a client got 202 for is always stored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::harness::{Node, spawn_node};

/// Every event resource stored in the SQLite database of `data`, read directly.
/// The resources of the events stored in a data directory of a vakt that is not running.
/// On SQLite what was acknowledged is in the ingest journal and the database together:
/// `vakt db stats` opens the store as vakt does (applying what the journal holds that the
/// database does not), then the tables are read directly.
async fn stored_resources(data: &Path) -> Vec<String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["db", "stats", "--data-dir"])
        .arg(data)
        .env("VAKT_LOG", "info")
        .env_remove("VAKT_DATABASE_URL")
        .output()
        .await
        .expect("vakt db stats runs");
    assert!(
        out.status.success(),
        "vakt db stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("applied the ingest journal"))
    {
        eprintln!("recovery: {line}");
    }
    let url = format!("sqlite://{}?mode=ro", data.join("vakt.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the database");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity check");
    assert_eq!(integrity, "ok", "the database is intact");
    sqlx::query_scalar("SELECT resource FROM events")
        .fetch_all(&mut conn)
        .await
        .expect("read events")
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("vakt.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\ndata_dir = \"{}\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .expect("config");
    path
}

fn batch(seq: &AtomicU64, size: u64, summary: &str) -> (Vec<String>, Value) {
    let first = seq.fetch_add(size, Ordering::SeqCst);
    let resources: Vec<String> = (first..first + size).map(|n| format!("seq-{n}")).collect();
    let events: Vec<Value> = resources
        .iter()
        .map(|r| json!({"resource": r, "check": "load", "severity": "warning", "summary": summary}))
        .collect();
    (resources, json!(events))
}

/// Sends batches from `senders` tasks until `stop`; returns what got 202 and what got
/// any other status (with its body), by resource.
async fn flood(
    base: String,
    senders: usize,
    size: u64,
    summary: &'static str,
    seq: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (BTreeSet<String>, Vec<(u16, String)>) {
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (client, base, seq, accepted, refused, stop) = (
            client.clone(),
            base.clone(),
            Arc::clone(&seq),
            Arc::clone(&accepted),
            Arc::clone(&refused),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !*stop.borrow() {
                let (resources, body) = batch(&seq, size, summary);
                match client
                    .post(format!("{base}/api/v1/events"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(response) if response.status().as_u16() == 202 => {
                        accepted.lock().expect("lock").extend(resources);
                    }
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap_or_default();
                        refused.lock().expect("lock").push((status, text));
                        if status == 429 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    // The server died mid-request: no answer, no promise.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let accepted = accepted.lock().expect("lock").clone();
    let refused = refused.lock().expect("lock").clone();
    (accepted, refused)
}

#[tokio::test]
async fn kill_nine_during_sustained_ingest_loses_no_accepted_event() {
    let work = tempfile::tempdir().expect("dir");
    let path = config(work.path(), "");
    let seq = Arc::new(AtomicU64::new(0));
    let mut accepted = BTreeSet::new();
    for round in 0..5u64 {
        let mut node: Node = spawn_node(&path, None).await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sending = tokio::spawn(flood(
            node.base.clone(),
            4,
            50,
            "sustained",
            Arc::clone(&seq),
            stop_rx,
        ));
        // Kill at a different moment each round, while requests are in flight.
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        node.child.start_kill().expect("kill -9");
        let _ = node.child.wait().await;
        let _ = stop_tx.send(true);
        let (got, refused) = sending.await.expect("senders");
        assert!(
            refused.iter().all(|(status, _)| *status == 429),
            "only back-pressure may refuse: {refused:?}"
        );
        eprintln!(
            "round {round}: {} events accepted before kill -9",
            got.len()
        );
        accepted.extend(got);
    }
    let stored: Vec<String> = stored_resources(&work.path().join("data")).await;
    let distinct: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "no event stored twice");
    let missing: Vec<&String> = accepted.difference(&distinct).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events missing after 5 kills, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        accepted.len() >= 1000,
        "the load was real: {}",
        accepted.len()
    );
    eprintln!(
        "5 kills: {} events accepted, {} stored (the rest were in flight, never acknowledged), 0 lost",
        accepted.len(),
        stored.len()
    );
}

/// Peak resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_flooded_queue_answers_429_and_memory_stays_bounded() {
    let work = tempfile::tempdir().expect("dir");
    let path = config(
        work.path(),
        "[ingest]\nqueue_events_max = 2000\nbatch_events_max = 500\nrequest_events_max = 1000\nretry_after_secs = 1\n",
    );
    let node = spawn_node(&path, None).await;
    let pid = node.child.id().expect("pid");
    let idle = rss_kib(pid);
    let seq = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sending = tokio::spawn(flood(
        node.base.clone(),
        16,
        500,
        "flood of events with a summary long enough to weigh something in memory",
        Arc::clone(&seq),
        stop_rx,
    ));
    let mut peak = idle;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    let _ = stop_tx.send(true);
    let (accepted, refused) = sending.await.expect("senders");
    let too_many = refused.iter().filter(|(s, _)| *s == 429).count();
    assert!(
        too_many > 0,
        "16 senders of 500 events overflow a 2,000-event queue"
    );
    assert_eq!(too_many, refused.len(), "only 429s: {refused:?}");
    assert!(
        refused[0].1.contains("queue"),
        "the 429 says why: {}",
        refused[0].1
    );
    let offered = seq.load(Ordering::SeqCst);
    eprintln!(
        "offered {offered} events: {} accepted, {too_many} requests refused with 429; RSS idle {} MiB, peak {} MiB",
        accepted.len(),
        idle / 1024,
        peak / 1024
    );
    // Bounded: the queue holds at most 2,000 events whatever is offered, SQLite's page
    // caches at most 64 MiB (the writer) and 4 x 8 MiB (the readers); what else grows is
    // the open alerts the accepted events made (each event its own alert), held in the
    // writer's memory at no more than 3 KiB each (about what Alertmanager holds per alert,
    // BENCHMARKS.md). A queue that grew with what is offered (several times what is
    // accepted here) would break this.
    let allowed = idle + 160 * 1024 + 3 * accepted.len() as u64;
    assert!(
        peak < allowed,
        "RSS grew from {idle} KiB to {peak} KiB with {} open alerts (allowed {allowed} KiB)",
        accepted.len()
    );
    let (queued_max, _) = crate::harness::metric(&node.base, "vakt_ingest_queue_events_max").await;
    let queued_max = queued_max.unwrap_or(0.0);
    assert_eq!(queued_max, 2000.0);
    // The journal's back-pressure is visible: its bound, and the waits counted (a
    // flood may or may not put the database 256 MiB behind on this machine).
    let (behind_max, _) =
        crate::harness::metric(&node.base, "vakt_store_journal_behind_max_bytes").await;
    assert_eq!(behind_max, Some(256.0 * 1024.0 * 1024.0));
    let (waits, _) = crate::harness::metric(&node.base, "vakt_store_journal_waits_total").await;
    assert!(waits.is_some(), "the waits are counted");
    // Every commit but the first (which loads the writer's cache through the database) wrote
    // and synced one journal record, and their time is counted.
    let (syncs, _) =
        crate::harness::metric(&node.base, "vakt_store_journal_sync_seconds_count").await;
    let (commits, _) = crate::harness::metric(&node.base, "vakt_store_commit_seconds_count").await;
    let (synced, _) =
        crate::harness::metric(&node.base, "vakt_store_journal_sync_seconds_sum").await;
    let (syncs, commits) = (syncs.unwrap_or(0.0), commits.unwrap_or(0.0));
    assert_eq!(syncs, commits - 1.0, "one sync per commit after the first");
    assert!(
        synced.is_some_and(|s| s > 0.0),
        "sync time counted: {synced:?}"
    );
    drop(node);
    let stored: BTreeSet<String> = stored_resources(&work.path().join("data"))
        .await
        .into_iter()
        .collect();
    assert!(
        accepted.is_subset(&stored),
        "every accepted event is stored"
    );
}

/// A small tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

async fn post(client: &reqwest::Client, base: &str, body: &Value) -> (u16, String) {
    let response = client
        .post(format!("{base}/api/v1/events"))
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_full_or_read_only_disk_answers_503_and_keeps_what_was_accepted() {
    let work = tempfile::tempdir().expect("dir");
    let data = work.path().join("data");
    let Some(disk) = Tmpfs::mount(&data, "3m") else {
        eprintln!(
            "\n*** SKIPPED a_full_or_read_only_disk_answers_503_and_keeps_what_was_accepted: cannot mount a tmpfs (needs root) ***\n"
        );
        return;
    };
    let path = config(work.path(), "");
    let node = spawn_node(&path, None).await;
    let client = reqwest::Client::new();
    let seq = AtomicU64::new(0);
    let summary = "x".repeat(2000);
    let mut accepted = BTreeSet::new();
    let mut full = None;
    for _ in 0..200 {
        let (resources, body) = batch(&seq, 50, &summary);
        match post(&client, &node.base, &body).await {
            (202, _) => accepted.extend(resources),
            other => {
                full = Some(other);
                break;
            }
        }
    }
    let (status, body) = full.expect("a 3 MiB disk fills up");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("storage is unavailable (the disk holding the database is full)"),
        "the 503 says the disk is full: {body}"
    );
    assert!(!accepted.is_empty());
    // Room again: the same process takes events again, nothing half-written in the way.
    // Room for everything accepted: the journal holds these compressible batches in a
    // fraction of their size, and when the database fell behind (a busy machine: its writes
    // run at idle priority) more of them were accepted before the database met the full
    // disk, and they need their full size in the tables and the WAL.
    disk.remount("size=256m");
    let (resources, body) = batch(&seq, 5, "after");
    crate::actions::eventually(10, "writes work again", || {
        let (client, base, body) = (client.clone(), node.base.clone(), body.clone());
        async move { (post(&client, &base, &body).await.0 == 202).then_some(()) }
    })
    .await;
    accepted.extend(resources);
    let mut node = node;
    let _ = node.child.kill().await;
    // A read-only data directory: vakt starts (it can read), and every write is refused with
    // a 503 that says why; nothing is half-written.
    disk.remount("ro");
    let mut node = spawn_node(&path, None).await;
    let (_, body) = batch(&seq, 5, "read-only");
    let (status, text) = post(&client, &node.base, &body).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("storage is unavailable (the database is read-only)"),
        "{text}"
    );
    let _ = node.child.kill().await;
    disk.remount("rw");
    let stored: BTreeSet<String> = stored_resources(&data).await.into_iter().collect();
    let missing = accepted.difference(&stored).count();
    assert_eq!(missing, 0, "every accepted event survived the full disk");
    drop(disk);
}
