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
    /// A file holding the token (its first line), instead of `token`; without either, the
    /// environment's `VAKT_TOKEN`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for an https:// server (besides the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_buffer_dir")]
    pub buffer_dir: PathBuf,
    #[serde(default = "default_buffer_max")]
    pub buffer_events_max: usize,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Events per request.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// Seconds to wait for the server's answer before sending the batch again (each event
    /// carries its idempotency key, so a batch the server did take is not stored twice).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
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
fn default_request_timeout() -> u64 {
    30
}

/// The on-disk queue: an NDJSON file of events and a state file `offset` that says which
/// events file is current (its generation) and how many of its bytes were delivered.
///
/// Generation 0's file is `events.ndjson`, generation N's `events.N.ndjson`. When every
/// event is delivered the queue moves to a fresh, empty file of the next generation instead
/// of emptying the current one in place: the state file is replaced atomically (write,
/// fsync, rename, fsync of the directory), so whatever instant the process dies at, the
/// state names a file and an offset that belong together. Files of other generations are
/// leftovers of such a switch and are removed at open.
pub struct Buffer {
    dir: PathBuf,
    generation: u64,
    offset: u64,
    pending: usize,
    max: usize,
    pub dropped: u64,
}

/// The steps of moving to a fresh file, in order (for the crash tests); the new offset is
/// recorded before the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetStep {
    /// The next generation's empty file exists and is durable.
    NewFile,
    /// The state file names the new generation.
    State,
    /// The old file is gone.
    OldFile,
}

impl Buffer {
    pub fn open(dir: &Path, max: usize) -> anyhow::Result<Buffer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let state_path = dir.join("offset");
        let (offset, generation) = match std::fs::read_to_string(&state_path) {
            Ok(text) => parse_state(&text).with_context(|| {
                format!("{}: expected \"OFFSET [GENERATION]\"", state_path.display())
            })?,
            Err(_) => (0, 0),
        };
        let mut buffer = Buffer {
            dir: dir.to_path_buf(),
            generation,
            offset,
            pending: 0,
            max: max.max(1),
            dropped: 0,
        };
        buffer.remove_other_generations();
        // A write cut short by a crash was never confirmed (its probe sends again): cut the
        // partial line off so the next event starts on a line of its own.
        let events = buffer.events_path();
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
        buffer.pending = buffer.read(usize::MAX)?.len();
        Ok(buffer)
    }

    fn file_name(generation: u64) -> String {
        match generation {
            0 => "events.ndjson".to_owned(),
            n => format!("events.{n}.ndjson"),
        }
    }

    fn events_path(&self) -> PathBuf {
        self.dir.join(Self::file_name(self.generation))
    }

    /// Removes events files of other generations (left by a switch a crash interrupted).
    fn remove_other_generations(&self) {
        let current = Self::file_name(self.generation);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("events.")
                && name.ends_with(".ndjson")
                && name != current
                && let Err(error) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(%error, file = %name, "cannot remove an old buffer file");
            }
        }
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

    /// Marks `bytes` (holding `events` events) delivered; once all are, moves to a fresh
    /// file.
    pub fn advance(&mut self, bytes: u64, events: usize) -> anyhow::Result<()> {
        self.advance_until(bytes, events, None)
    }

    /// `advance`, stopping dead after `stop` (a simulated crash, for the tests).
    pub fn advance_until(
        &mut self,
        bytes: u64,
        events: usize,
        stop: Option<ResetStep>,
    ) -> anyhow::Result<()> {
        self.offset += bytes;
        self.pending = self.pending.saturating_sub(events);
        self.write_state(self.offset, self.generation)?;
        if self.pending > 0 {
            return Ok(());
        }
        let next = self.generation + 1;
        let fresh = self.dir.join(Self::file_name(next));
        let file = std::fs::File::create(&fresh).context("creating the next buffer file")?;
        file.sync_all().context("syncing the next buffer file")?;
        sync_dir(&self.dir)?;
        if stop == Some(ResetStep::NewFile) {
            return Ok(());
        }
        self.write_state(0, next)?;
        if stop == Some(ResetStep::State) {
            return Ok(());
        }
        let old = self.events_path();
        self.generation = next;
        self.offset = 0;
        if let Err(error) = std::fs::remove_file(&old)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, file = %old.display(), "cannot remove a delivered buffer file");
        }
        Ok(())
    }

    /// Replaces the state file atomically.
    fn write_state(&self, offset: u64, generation: u64) -> anyhow::Result<()> {
        let tmp = self.dir.join("offset.tmp");
        let mut file = std::fs::File::create(&tmp).context("writing the offset")?;
        file.write_all(format!("{offset} {generation}\n").as_bytes())
            .context("writing the offset")?;
        file.sync_all().context("syncing the offset")?;
        std::fs::rename(&tmp, self.dir.join("offset")).context("replacing the offset")?;
        sync_dir(&self.dir)
    }
}

/// `OFFSET GENERATION`, or a bare `OFFSET` (generation 0, as earlier versions wrote it).
fn parse_state(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split_whitespace();
    let offset = parts.next()?.parse().ok()?;
    let generation = match parts.next() {
        Some(g) => g.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((offset, generation))
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// The wire event for a probe's reading, timed when it was measured, marked as this agent's
/// (`source = "agent:NAME"`, label `agent`) so the server's catalogue lists it, with an
/// idempotency key made once, here, and kept in the buffer: however often a batch is sent
/// again (an answer lost to a timeout), the server stores each event once.
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
        "details": input.details,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "idempotency_key": format!("agent:{agent}:{}", ulid::Ulid::new()),
    })
}

/// Reads the agent's file, reporting every problem at once as `file:line:column`.
fn load(name: &str, text: &str) -> Result<AgentFile, Vec<String>> {
    use crate::config::document::Document;
    use vakt_core::config::ConfigError;
    let render = |errors: Vec<ConfigError>| crate::config::document::render(errors, name, text);
    let mut doc = Document::parse(text).map_err(render)?;
    let mut errors = doc.unknown_sections(&["agent", "probes"]);
    let agent: Option<AgentConfig> = doc.optional("agent", &mut errors);
    let probes: Vec<ProbeConfig> = doc.values("probes", &mut errors);
    let mut found = Vec::new();
    match &agent {
        None if doc.all_ok(&["agent"]) => found.push(ConfigError {
            span: None,
            message: "[agent] is missing: it needs at least name and server".into(),
        }),
        Some(agent)
            if !(agent.server.starts_with("http://") || agent.server.starts_with("https://")) =>
        {
            found.push(ConfigError {
                span: None,
                message: format!(
                    "agent.server: {:?} must start with http:// or https://",
                    agent.server
                ),
            });
        }
        _ => {}
    }
    if doc.all_ok(&["probes"]) {
        found.extend(crate::probes::validate(&probes));
    }
    doc.place(found, &mut errors);
    match agent {
        Some(agent) if errors.is_empty() => Ok(AgentFile { agent, probes }),
        _ => Err(render(errors)),
    }
}

pub fn run(args: AgentArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))
        .map_err(Failure::user)?;
    let mut file = load(&args.config.display().to_string(), &text)
        .map_err(|lines| Failure::user(anyhow!("{}", lines.join("\n"))))?;
    if file.agent.token.is_none() {
        file.agent.token = match &file.agent.token_file {
            Some(path) => crate::cli::Credential {
                token_file: Some(path.clone()),
                ..Default::default()
            }
            .token()
            .map_err(Failure::user)?,
            None => std::env::var("VAKT_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
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
    let client = crate::cli::trusting(reqwest::Client::builder(), config.ca_file.as_deref())?
        .timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
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

/// What to do after a delivery attempt, by the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 202: stored (or already stored: the events' idempotency keys).
    Delivered,
    /// The server will never take these events (400, 422): dropped, loudly.
    Refused,
    /// The batch is too large for the server (413): send fewer at a time.
    TooLarge,
    /// Try again later: unreachable, timed out, 5xx, 429, or not (yet) authorised: the
    /// events stay in the buffer.
    Retry,
}

fn classify(status: u16) -> Answer {
    match status {
        200..=202 => Answer::Delivered,
        413 => Answer::TooLarge,
        401 | 403 | 404 | 408 | 409 | 425 | 429 => Answer::Retry,
        400..=499 => Answer::Refused,
        _ => Answer::Retry,
    }
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
    let mut batch_max = config.batch_max.max(1);
    // Since when the server has not taken events, and how often it failed; then, once it is
    // back, how much of the backlog has been delivered.
    let mut outage: Option<(std::time::Instant, u64)> = None;
    let mut backlog: Option<(std::time::Instant, usize)> = None;
    loop {
        let (start, batch) = {
            let buffer = buffer.lock().await;
            match buffer.read(batch_max) {
                Ok(batch) => (buffer.offset(), batch),
                Err(error) => {
                    tracing::error!(%error, "cannot read the buffer");
                    (buffer.offset(), Vec::new())
                }
            }
        };
        if batch.is_empty() {
            if let Some((since, delivered)) = backlog.take() {
                tracing::info!(
                    delivered,
                    secs = since.elapsed().as_secs(),
                    "the buffered backlog is delivered, in order"
                );
            }
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
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let answer = classify(status.as_u16());
                match answer {
                    Answer::Delivered => {}
                    Answer::Refused => {
                        let text = response.text().await.unwrap_or_default();
                        tracing::error!(%status, events = body.len(), answer = %text, "the server refused buffered events; dropping them");
                    }
                    Answer::TooLarge => {
                        tracing::warn!(%status, events = body.len(), "the server finds the batch too large; sending fewer at a time");
                    }
                    Answer::Retry if status.as_u16() == 401 || status.as_u16() == 403 => {
                        let text = response.text().await.unwrap_or_default();
                        tracing::warn!(%status, answer = %text, "the server wants a valid token with the ingest role ([agent] token; vakt token create --role ingest); keeping the events and retrying");
                    }
                    Answer::Retry => {
                        tracing::warn!(%status, "the server did not take the events; keeping them and retrying");
                    }
                }
                answer
            }
            Err(error) => {
                let pending = buffer.lock().await.pending();
                tracing::warn!(%error, pending, "the server is unreachable or did not answer in time; buffering");
                Answer::Retry
            }
        };
        let answer = match answer {
            Answer::TooLarge if batch.len() > 1 => {
                batch_max = (batch.len() / 2).max(1);
                continue;
            }
            Answer::TooLarge => {
                tracing::error!("one buffered event is larger than the server takes; dropping it");
                Answer::Refused
            }
            other => other,
        };
        if answer == Answer::Retry {
            let (since, failures) = outage.get_or_insert((std::time::Instant::now(), 0));
            *failures += 1;
            tracing::debug!(
                failures = *failures,
                secs = since.elapsed().as_secs(),
                "delivery failed"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            continue;
        }
        if let Err(error) = buffer.lock().await.delivered(start, bytes, batch.len()) {
            tracing::error!(%error, "cannot record delivery; events may be sent again (the server stores them once)");
        }
        backoff = Duration::from_millis(500);
        batch_max = config.batch_max.max(1);
        if let Some((since, failures)) = outage.take() {
            let pending = buffer.lock().await.pending();
            tracing::info!(
                server = %config.server,
                failed_attempts = failures,
                down_secs = since.elapsed().as_secs(),
                delivered = body.len(),
                pending,
                "the server takes events again"
            );
            backlog = Some((std::time::Instant::now(), 0));
        }
        if let Some((_, delivered)) = &mut backlog {
            *delivered += body.len();
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

    /// Issue 13: moving to a fresh file after everything was delivered is crash-safe. For
    /// each step of the switch, the process "dies" right after it (nothing more runs, as
    /// with kill -9); reopened, the buffer neither skips an event written afterwards nor
    /// hands out a delivered one again.
    #[test]
    fn a_crash_at_any_step_of_the_switch_loses_and_repeats_nothing() {
        for stop in [
            Some(ResetStep::NewFile),
            Some(ResetStep::State),
            Some(ResetStep::OldFile),
            None,
        ] {
            let dir = tempfile::tempdir().expect("dir");
            let mut buffer = Buffer::open(dir.path(), 100).expect("open");
            for n in 0..3 {
                buffer.push(&json!({"n": n})).expect("push");
            }
            let batch = buffer.read(10).expect("read");
            let bytes: u64 = batch.iter().map(|(_, b)| b).sum();
            buffer
                .advance_until(bytes, batch.len(), stop)
                .expect("advance");
            drop(buffer);

            let mut buffer = Buffer::open(dir.path(), 100).expect("reopen");
            assert_eq!(
                buffer.pending(),
                0,
                "{stop:?}: nothing delivered comes back"
            );
            assert!(buffer.read(10).expect("read").is_empty(), "{stop:?}");
            buffer.push(&json!({"n": 3})).expect("push");
            buffer.push(&json!({"n": 4})).expect("push");
            drop(buffer);
            let buffer = Buffer::open(dir.path(), 100).expect("reopen again");
            let values: Vec<Value> = buffer
                .read(10)
                .expect("read")
                .into_iter()
                .filter_map(|(v, _)| v)
                .collect();
            assert_eq!(
                values,
                [json!({"n": 3}), json!({"n": 4})],
                "{stop:?}: events written after the crash are all there, in order"
            );
            let files: Vec<String> = std::fs::read_dir(dir.path())
                .expect("list")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".ndjson"))
                .collect();
            assert_eq!(files.len(), 1, "{stop:?}: one events file left: {files:?}");
        }
    }

    /// The state file of earlier versions (a bare offset) is read as generation 0.
    #[test]
    fn the_old_state_file_is_understood() {
        assert_eq!(parse_state("120"), Some((120, 0)));
        assert_eq!(parse_state("120 3\n"), Some((120, 3)));
        assert_eq!(parse_state("x"), None);
        assert_eq!(parse_state("1 2 3"), None);
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(202), Answer::Delivered);
        assert_eq!(classify(400), Answer::Refused);
        assert_eq!(
            classify(401),
            Answer::Retry,
            "a missing token keeps the events"
        );
        assert_eq!(classify(413), Answer::TooLarge);
        assert_eq!(classify(429), Answer::Retry);
        assert_eq!(classify(503), Answer::Retry);
    }

    #[test]
    fn every_problem_of_the_agent_file_has_its_line() {
        let text = "[agent]\nname = \"web1\"\nserver = \"ftp://x\"\n\n[[probes]]\nname = \"d\"\ntype = \"disk\"\n\n[[probes]]\nname = \"e\"\ntype = \"nope\"\n";
        let lines = match load("agent.toml", text) {
            Ok(_) => panic!("a broken file loaded"),
            Err(lines) => lines,
        };
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("agent.toml:3:1: agent.server:")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("agent.toml:11:8: unknown variant `nope`")),
            "{lines:#?}"
        );
        let good = "[agent]\nname = \"web1\"\nserver = \"http://x\"\n";
        assert!(load("agent.toml", good).is_ok());
    }
}
