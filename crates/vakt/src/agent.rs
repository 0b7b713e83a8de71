//! `vakt agent`: the probes of its configuration on another host, forwarding to a server.
//!
//! Probe events go into an on-disk buffer first (an NDJSON file and the offset of the first
//! event not yet delivered, both fsync'd), and a sender forwards them in order, in batches,
//! to the server's `POST /api/v1/events`; the offset moves only after a 202. While the server
//! is unreachable the buffer grows up to `buffer_events_max`; beyond it the oldest events are
//! dropped, counted, and a warning event says so. A heartbeat (`POST /api/v1/heartbeats`,
//! `agent-NAME`) lets the server notice a dead agent.

use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;
use serde_json::{Value, json};
use vakt_core::EventInput;

use crate::cli::{AgentArgs, Failure};
use crate::probes::ProbeConfig;

/// The agent's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub agent: AgentConfig,
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's name: its heartbeat is `agent-NAME`.
    pub name: String,
    /// The server's base URL.
    pub server: String,
    /// Sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "default_buffer_dir")]
    pub buffer_dir: PathBuf,
    #[serde(default = "default_buffer_max")]
    pub buffer_events_max: usize,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Events per request.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
}

fn default_buffer_dir() -> PathBuf {
    PathBuf::from("./vakt-agent-buffer")
}
fn default_buffer_max() -> usize {
    100_000
}
fn default_heartbeat() -> u64 {
    30
}
fn default_batch() -> usize {
    500
}

/// The on-disk queue: `events.ndjson` and `offset` (bytes of it already delivered).
pub struct Buffer {
    dir: PathBuf,
    offset: u64,
    pending: usize,
    max: usize,
    pub dropped: u64,
}

impl Buffer {
    pub fn open(dir: &Path, max: usize) -> anyhow::Result<Buffer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let offset = match std::fs::read_to_string(dir.join("offset")) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{}: not a number", dir.join("offset").display()))?,
            Err(_) => 0,
        };
        // A write cut short by a crash was never confirmed (its probe sends again): cut the
        // partial line off so the next event starts on a line of its own.
        let events = dir.join("events.ndjson");
        if let Ok(bytes) = std::fs::read(&events)
            && bytes.last().is_some_and(|b| *b != b'\n')
        {
            let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&events)
                .context("opening the buffer")?;
            file.set_len(keep as u64)
                .context("cutting a partial line")?;
            file.sync_all().context("syncing the buffer")?;
        }
        let mut buffer = Buffer {
            dir: dir.to_path_buf(),
            offset,
            pending: 0,
            max: max.max(1),
            dropped: 0,
        };
        buffer.pending = buffer.read(usize::MAX)?.len();
        Ok(buffer)
    }

    fn events_path(&self) -> PathBuf {
        self.dir.join("events.ndjson")
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Appends one event, durably; drops the oldest when full.
    pub fn push(&mut self, event: &Value) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.events_path())
            .context("opening the buffer")?;
        let mut line = serde_json::to_vec(event).context("encoding an event")?;
        line.push(b'\n');
        file.write_all(&line).context("writing the buffer")?;
        file.sync_data().context("syncing the buffer")?;
        self.pending += 1;
        while self.pending > self.max {
            let oldest = self.read(1)?;
            let Some((_, bytes)) = oldest.first() else {
                break;
            };
            self.advance(*bytes, 1)?;
            self.dropped += 1;
        }
        Ok(())
    }

    /// Where the oldest undelivered event starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Up to `n` events from the oldest, each with its size in bytes; a line that is not
    /// JSON (a write cut short by a crash, then appended to) is `None`, to be stepped over.
    pub fn read(&self, n: usize) -> anyhow::Result<Vec<(Option<Value>, u64)>> {
        let file = match std::fs::File::open(self.events_path()) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(anyhow!("opening the buffer: {error}")),
        };
        let mut reader = std::io::BufReader::new(file);
        reader
            .seek(std::io::SeekFrom::Start(self.offset))
            .context("seeking in the buffer")?;
        let mut out = Vec::new();
        let mut line = String::new();
        while out.len() < n {
            line.clear();
            let read = reader.read_line(&mut line).context("reading the buffer")?;
            if read == 0 || !line.ends_with('\n') {
                break; // the end, or a line cut short by a crash: written again never, skipped
            }
            out.push((serde_json::from_str(line.trim_end()).ok(), read as u64));
        }
        Ok(out)
    }

    /// Marks the `events` events in `bytes` from `start` delivered. When the oldest events
    /// were dropped meanwhile (a full buffer), only what lies beyond is counted again.
    pub fn delivered(&mut self, start: u64, bytes: u64, events: usize) -> anyhow::Result<()> {
        if self.offset == start {
            return self.advance(bytes, events);
        }
        self.offset = self.offset.max(start + bytes);
        self.pending = self.read(usize::MAX)?.len();
        self.advance(0, 0)
    }

    /// Marks `bytes` (holding `events` events) delivered; empties the file once all are.
    pub fn advance(&mut self, bytes: u64, events: usize) -> anyhow::Result<()> {
        self.offset += bytes;
        self.pending = self.pending.saturating_sub(events);
        if self.pending == 0 {
            std::fs::write(self.events_path(), b"").context("emptying the buffer")?;
            self.offset = 0;
        }
        let tmp = self.dir.join("offset.tmp");
        let mut file = std::fs::File::create(&tmp).context("writing the offset")?;
        file.write_all(self.offset.to_string().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("offset")).context("replacing the offset")?;
        Ok(())
    }
}

/// The wire event for a probe's reading, timed when it was measured, marked as this agent's
/// (`source = "agent:NAME"`, label `agent`) so the server's catalogue lists it.
fn wire(agent: &str, input: &EventInput) -> Value {
    let mut labels = input.labels.clone();
    labels.insert("agent".to_owned(), agent.to_owned());
    json!({
        "source": format!("agent:{agent}"),
        "resource": input.resource,
        "check": input.check,
        "severity": input.severity,
        "summary": input.summary,
        "service": input.service,
        "environment": input.environment,
        "labels": labels,
        "metrics": input.metrics,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

pub fn run(args: AgentArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))
        .map_err(Failure::user)?;
    let file: AgentFile = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", args.config.display(), e))
        .map_err(Failure::user)?;
    let errors = crate::probes::validate(&file.probes);
    if !errors.is_empty() {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| e.render(&args.config.display().to_string(), &text))
            .collect();
        return Err(Failure::user(anyhow!("{}", lines.join("\n"))));
    }
    if !(file.agent.server.starts_with("http://") || file.agent.server.starts_with("https://")) {
        return Err(Failure::user(anyhow!(
            "agent.server: {:?} must start with http:// or https://",
            file.agent.server
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::internal)?;
    runtime.block_on(agent(file)).map_err(Failure::internal)
}

async fn agent(file: AgentFile) -> anyhow::Result<()> {
    let config = file.agent.clone();
    let buffer = Buffer::open(&config.buffer_dir, config.buffer_events_max)?;
    tracing::info!(name = %config.name, server = %config.server, probes = file.probes.len(), pending = buffer.pending(), "vakt agent running");
    let buffer = std::sync::Arc::new(tokio::sync::Mutex::new(buffer));
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (sink, mut events) =
        tokio::sync::mpsc::channel::<(EventInput, tokio::sync::oneshot::Sender<bool>)>(64);
    let _probes = crate::probes::start(&file.probes, &sink, None, &stop);
    // Probe events into the buffer.
    let writer = {
        let (buffer, wake, name) = (
            std::sync::Arc::clone(&buffer),
            std::sync::Arc::clone(&wake),
            config.name.clone(),
        );
        tokio::spawn(async move {
            while let Some((input, done)) = events.recv().await {
                let mut buffer = buffer.lock().await;
                let before = buffer.dropped;
                let mut result = buffer.push(&wire(&name, &input));
                if result.is_ok() && buffer.dropped > before {
                    tracing::warn!(
                        dropped = buffer.dropped,
                        "the buffer is full: dropped the oldest events"
                    );
                    let warning = EventInput {
                        source: Some("agent".into()),
                        resource: name.clone(),
                        check: "agent-buffer".into(),
                        severity: Some(vakt_core::Severity::Warning),
                        summary: format!(
                            "agent {name}: buffer full, {} oldest event(s) dropped in all",
                            buffer.dropped
                        ),
                        metrics: [("dropped".to_owned(), buffer.dropped as f64)].into(),
                        ..EventInput::default()
                    };
                    result = buffer.push(&wire(&name, &warning));
                }
                if let Err(error) = &result {
                    tracing::error!(%error, "cannot write the buffer; the probe sends again next time");
                }
                let _ = done.send(result.is_ok());
                wake.notify_one();
            }
        })
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building an HTTP client")?;
    let heartbeat = {
        let (client, config) = (client.clone(), config.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(config.heartbeat_secs.max(1)));
            loop {
                tick.tick().await;
                let body = json!({"name": format!("agent-{}", config.name), "interval_secs": config.heartbeat_secs.max(1), "resource": config.name});
                let mut request = client
                    .post(format!(
                        "{}/api/v1/heartbeats",
                        config.server.trim_end_matches('/')
                    ))
                    .json(&body);
                if let Some(token) = &config.token {
                    request = request.bearer_auth(token);
                }
                if let Err(error) = request.send().await {
                    tracing::debug!(%error, "heartbeat not delivered");
                }
            }
        })
    };
    let sender = tokio::spawn(send_loop(
        std::sync::Arc::clone(&buffer),
        wake,
        client,
        config,
    ));
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop_tx.send(true);
    heartbeat.abort();
    sender.abort();
    writer.abort();
    Ok(())
}

/// Forwards the buffer in order; the offset moves only after the server's 202.
async fn send_loop(
    buffer: std::sync::Arc<tokio::sync::Mutex<Buffer>>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    client: reqwest::Client,
    config: AgentConfig,
) {
    let url = format!("{}/api/v1/events", config.server.trim_end_matches('/'));
    let mut backoff = Duration::from_millis(500);
    loop {
        let (start, batch) = {
            let buffer = buffer.lock().await;
            match buffer.read(config.batch_max.max(1)) {
                Ok(batch) => (buffer.offset(), batch),
                Err(error) => {
                    tracing::error!(%error, "cannot read the buffer");
                    (buffer.offset(), Vec::new())
                }
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let bytes: u64 = batch.iter().map(|(_, b)| b).sum();
        let body: Vec<&Value> = batch.iter().filter_map(|(v, _)| v.as_ref()).collect();
        if body.len() < batch.len() {
            tracing::error!(
                lines = batch.len() - body.len(),
                "the buffer holds lines that are not events (a write cut short); skipping them"
            );
        }
        if body.is_empty() {
            if let Err(error) = buffer.lock().await.delivered(start, bytes, batch.len()) {
                tracing::error!(%error, "cannot record the skipped lines");
            }
            continue;
        }
        let mut request = client.post(&url).json(&body);
        if let Some(token) = &config.token {
            request = request.bearer_auth(token);
        }
        let outcome = request.send().await;
        let delivered = match &outcome {
            Ok(response) if response.status().as_u16() == 202 => true,
            Ok(response)
                if response.status().is_client_error() && response.status().as_u16() != 429 =>
            {
                // The server will never take these: say so loudly and move on.
                tracing::error!(status = %response.status(), events = batch.len(), "the server refused buffered events; dropping them");
                true
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), "the server did not take the events; retrying");
                false
            }
            Err(error) => {
                let pending = buffer.lock().await.pending();
                tracing::warn!(%error, pending, "the server is unreachable; buffering");
                false
            }
        };
        if delivered {
            if let Err(error) = buffer.lock().await.delivered(start, bytes, batch.len()) {
                tracing::error!(%error, "cannot record delivery; events may be sent again");
            }
            backoff = Duration::from_millis(500);
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_keeps_order_drops_the_oldest_and_survives_a_cut_line() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buffer = Buffer::open(dir.path(), 3).expect("open");
        for n in 0..5 {
            buffer.push(&json!({"n": n})).expect("push");
        }
        assert_eq!((buffer.pending(), buffer.dropped), (3, 2));
        let batch = buffer.read(10).expect("read");
        let seen: Vec<Value> = batch.iter().filter_map(|(v, _)| v.clone()).collect();
        assert_eq!(seen, [json!({"n": 2}), json!({"n": 3}), json!({"n": 4})]);
        // Two are sent; meanwhile a push drops the oldest: nothing unsent is skipped.
        let start = buffer.offset();
        let sent: u64 = batch[..2].iter().map(|(_, b)| b).sum();
        buffer.push(&json!({"n": 5})).expect("push");
        buffer.delivered(start, sent, 2).expect("delivered");
        let rest: Vec<Value> = buffer
            .read(10)
            .expect("read")
            .into_iter()
            .filter_map(|(v, _)| v)
            .collect();
        assert_eq!(rest, [json!({"n": 4}), json!({"n": 5})]);
        // Reopened (a restart), it knows where it was; a line cut short by a crash is cut off.
        drop(buffer);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.ndjson"))
            .expect("open");
        file.write_all(b"{\"n\": 6").expect("cut line");
        drop(file);
        let mut buffer = Buffer::open(dir.path(), 3).expect("reopen");
        buffer.push(&json!({"n": 7})).expect("push");
        let entries = buffer.read(10).expect("read");
        let values: Vec<Option<Value>> = entries.iter().map(|(v, _)| v.clone()).collect();
        assert_eq!(
            values,
            [
                Some(json!({"n": 4})),
                Some(json!({"n": 5})),
                Some(json!({"n": 7}))
            ]
        );
    }
}
