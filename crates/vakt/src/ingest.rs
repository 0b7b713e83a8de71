//! The ingest queue and its writer: bounded in events, group-committed, answered only once durable.
//!
//! `deliver` is the one way into the pipeline: every channel (HTTP ingest, the peer
//! protocols, syslog, SNMP, heartbeats, probes, expiry) turns what it received into
//! `EventInput`s and calls it; it runs the stateless stages on the caller's task and queues
//! the prepared batch in the channel's bounded queue. A semaphore counts queued events: when it has
//! no room the submit fails at once (HTTP answers 429) instead of queueing without bound.
//! One writer task takes whatever is queued, up to `batch_events_max` events, hands it to the
//! store as one transaction, and answers every sender in it when the commit returns.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use vakt_core::{Correlated, Pipeline, Prepared};
use vakt_store::{Store, StoreError};

use crate::metrics::{CategoryLabels, ChannelLabels, Metrics, RejectLabels, TransitionLabels};

/// Runs the stateless stages over `inputs` with `pipeline` (the channel's name as the
/// default `source`) and queues the batch in `channel`. The one way into the pipeline.
pub async fn deliver(
    channel: &Channel,
    pipeline: Arc<Pipeline>,
    inputs: Vec<vakt_core::EventInput>,
    when_full: WhenFull,
    answer: Answer,
) -> Result<Receipt, SubmitError> {
    let count = inputs.len();
    let received_at = chrono::Utc::now();
    let started = Instant::now();
    let batch: Vec<_> = inputs
        .into_iter()
        .map(|input| pipeline.prepare(input, channel.name(), received_at))
        .collect();
    if count > 0 {
        let metrics = &channel.ingest.metrics;
        let per_event = started.elapsed().as_secs_f64() / count as f64;
        for prepared in &batch {
            metrics.pipeline_seconds.observe(per_event);
            metrics.rule_errors.inc_by(prepared.rule_errors as u64);
        }
    }
    channel.enqueue(pipeline, batch, when_full, answer).await
}

/// `deliver`, then waits until the batch is committed: for a sender that answers only
/// "stored" (the decisions are freed by the writer, `Answer::Stored`).
pub async fn store(
    channel: &Channel,
    pipeline: Arc<Pipeline>,
    inputs: Vec<vakt_core::EventInput>,
    when_full: WhenFull,
) -> Result<(), SubmitError> {
    deliver(channel, pipeline, inputs, when_full, Answer::Stored)
        .await?
        .committed()
        .await
        .map(drop)
}

/// Told about every committed batch (heartbeats watch for their resources); must not block.
pub type Observer = Box<dyn Fn(&[Correlated]) + Send + Sync>;

/// What the writer needs besides the queue: who to tell, what silences apply.
pub struct WriterHooks {
    pub observer: Observer,
    pub silences: Arc<crate::silences::SilenceBoard>,
    /// Woken when a commit decided actions that are due.
    pub dispatch: Arc<tokio::sync::Notify>,
    /// Where a commit's due actions for new alerts go, claimed in the commit itself.
    pub handoff: crate::actions::Handoff,
}

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the ingest queue is full ({queued} of {capacity} events waiting)")]
    QueueFull { queued: usize, capacity: usize },
    #[error("the batch of {0} events is larger than the whole ingest queue")]
    TooLarge(usize),
    #[error("vakt is shutting down")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    pipeline: Arc<Pipeline>,
    batch: Vec<Prepared>,
    answer: Answer,
    reply: oneshot::Sender<Result<Vec<Correlated>, Arc<StoreError>>>,
    /// Room in the channel's and the global queue, given back when the batch is committed.
    permits: [OwnedSemaphorePermit; 2],
}

/// What to do when a queue has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Fail at once (HTTP answers 429, UDP counts a drop).
    Refuse,
    /// Wait for room (TCP stops reading meanwhile: back-pressure).
    Wait,
}

/// What the sender of a batch is told once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The decisions (the event, its alert, the actions), for a sender that answers with
    /// them (the events API).
    Outcomes,
    /// Only that it is stored: the receipt's outcomes are empty. The writer drops them
    /// itself, so a request that answers "stored" does not spend its own time freeing
    /// them (about 2,300 instructions an alert, on the request's task).
    Stored,
}

/// One ingest channel's way into the queue.
#[derive(Clone)]
pub struct Channel {
    name: Arc<str>,
    /// The channel's received-events and received-bytes counters, looked up by its label
    /// once (at its first event: a channel that never receives shows no series).
    received: Arc<std::sync::OnceLock<(Counter, Counter)>>,
    room: Arc<Semaphore>,
    capacity: usize,
    ingest: Ingest,
}

/// A queued batch: resolves when it is committed.
pub struct Receipt(oneshot::Receiver<Result<Vec<Correlated>, Arc<StoreError>>>);

impl Receipt {
    pub async fn committed(self) -> Result<Vec<Correlated>, SubmitError> {
        match self.0.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(error)) => Err(SubmitError::Store(clone_error(&error))),
            Err(_) => Err(SubmitError::Closed),
        }
    }
}

impl Channel {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts what arrived on the channel.
    pub fn count_received(&self, events: usize, bytes: usize) {
        let (events_received, bytes_received) = self.received.get_or_init(|| {
            let labels = ChannelLabels {
                channel: self.name.to_string(),
            };
            let metrics = &self.ingest.metrics;
            (
                metrics.events_received.get_or_create(&labels).clone(),
                metrics.bytes_received.get_or_create(&labels).clone(),
            )
        });
        events_received.inc_by(events as u64);
        bytes_received.inc_by(bytes as u64);
    }

    /// Counts events the channel could not queue or store, by reason.
    pub fn count_rejected(&self, count: usize, reason: &'static str) {
        self.ingest
            .metrics
            .events_rejected
            .get_or_create(&RejectLabels {
                channel: self.name.to_string(),
                reason,
            })
            .inc_by(count as u64);
    }

    /// Waits for a receipt in the background and counts a failed commit: for channels whose
    /// senders cannot be told (syslog, SNMP traps).
    pub fn count_failures(&self, count: usize, receipt: Receipt) {
        let channel = self.clone();
        tokio::spawn(async move {
            if let Err(error) = receipt.committed().await {
                tracing::warn!(channel = %channel.name(), %error, count, "events from a channel that cannot be told were not stored");
                channel.count_rejected(count, "store_error");
            }
        });
    }

    /// The queue's and the ingest's metrics (for channels' own counters).
    pub fn metrics(&self) -> &Metrics {
        &self.ingest.metrics
    }

    /// Queues a prepared batch; the receipt says when it is durable. Dropping the receipt
    /// does not cancel the batch.
    pub async fn enqueue(
        &self,
        pipeline: Arc<Pipeline>,
        batch: Vec<Prepared>,
        when_full: WhenFull,
        answer: Answer,
    ) -> Result<Receipt, SubmitError> {
        let (reply, receipt) = oneshot::channel();
        if batch.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
            return Ok(Receipt(receipt));
        }
        let permits = self.ingest.reserve(self, batch.len(), when_full).await?;
        self.ingest
            .jobs
            .send(Job {
                pipeline,
                batch,
                answer,
                reply,
                permits,
            })
            .map_err(|_| SubmitError::Closed)?;
        Ok(Receipt(receipt))
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    jobs: mpsc::UnboundedSender<Job>,
    room: Arc<Semaphore>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl Ingest {
    /// Starts the writer. It ends when every `Ingest` clone is dropped and the queue is drained.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        capacity: usize,
        batch_events_max: usize,
        hooks: WriterHooks,
    ) -> (Ingest, JoinHandle<()>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(capacity));
        metrics
            .queue_events_max
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        let writer = tokio::spawn(write_loop(
            queue,
            store,
            Arc::clone(&metrics),
            Arc::clone(&room),
            capacity,
            batch_events_max,
            hooks,
        ));
        (
            Ingest {
                jobs,
                room,
                capacity,
                metrics,
            },
            writer,
        )
    }

    /// A named channel (`http`, `syslog`, ...) with its own bound on queued events, inside
    /// the global one, so one flooding source cannot take all of the queue.
    pub fn channel(&self, name: &str, capacity: usize) -> Channel {
        let capacity = capacity.clamp(1, self.capacity);
        Channel {
            name: Arc::from(name),
            received: Arc::default(),
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            ingest: self.clone(),
        }
    }

    /// Reserves room for `wanted` events in `channel` and in the global queue.
    async fn reserve(
        &self,
        channel: &Channel,
        wanted: usize,
        when_full: WhenFull,
    ) -> Result<[OwnedSemaphorePermit; 2], SubmitError> {
        if wanted > channel.capacity {
            return Err(SubmitError::TooLarge(wanted));
        }
        let n = u32::try_from(wanted).map_err(|_| SubmitError::TooLarge(wanted))?;
        let full = |room: &Semaphore, capacity: usize| SubmitError::QueueFull {
            queued: capacity - room.available_permits(),
            capacity,
        };
        let permits = match when_full {
            WhenFull::Refuse => [
                Arc::clone(&channel.room)
                    .try_acquire_many_owned(n)
                    .map_err(|_| full(&channel.room, channel.capacity))?,
                Arc::clone(&self.room)
                    .try_acquire_many_owned(n)
                    .map_err(|_| full(&self.room, self.capacity))?,
            ],
            WhenFull::Wait => [
                Arc::clone(&channel.room)
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| SubmitError::Closed)?,
                Arc::clone(&self.room)
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| SubmitError::Closed)?,
            ],
        };
        self.metrics.queue_events.set(self.queued());
        Ok(permits)
    }

    /// False once the writer has stopped.
    pub fn is_running(&self) -> bool {
        !self.jobs.is_closed()
    }

    fn queued(&self) -> i64 {
        i64::try_from(self.capacity - self.room.available_permits()).unwrap_or(i64::MAX)
    }
}

fn clone_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}

async fn write_loop(
    mut queue: mpsc::UnboundedReceiver<Job>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    room: Arc<Semaphore>,
    capacity: usize,
    batch_events_max: usize,
    hooks: WriterHooks,
) {
    let mut held: Option<Job> = None;
    let mut last_group_wake = None;
    let mut last_lag = vakt_store::WriteLag::default();
    let mut last_senders = 0;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        // Group commit: take what is already queued, same configuration, up to the batch bound.
        let mut events = first.batch.len();
        let mut jobs = vec![first];
        take_queued(
            &mut queue,
            &mut jobs,
            &mut events,
            &mut held,
            batch_events_max,
        );
        // When the last commit served several senders, more are likely on their way: requests
        // this worker has already read wait behind this task. Letting them run first (one
        // yield, no timer) puts their events into this commit instead of the next, so a
        // sync, whose CPU (system calls, the disk's completions, the wake-ups around it)
        // costs about as much as deciding a few alerts, covers more of them. A lone sender
        // waits for nothing: with nothing else ready the task runs again at once.
        if last_senders > 1 && held.is_none() && events < batch_events_max {
            tokio::task::yield_now().await;
            take_queued(
                &mut queue,
                &mut jobs,
                &mut events,
                &mut held,
                batch_events_max,
            );
        }
        last_senders = jobs.len();
        commit(
            &*store,
            &metrics,
            &hooks,
            jobs,
            events,
            &mut last_group_wake,
            &mut last_lag,
        )
        .await;
        metrics
            .queue_events
            .set(i64::try_from(capacity - room.available_permits()).unwrap_or(i64::MAX));
    }
    tracing::debug!("ingest writer stopped: queue drained");
}

/// Moves queued jobs into `jobs` while they share the first job's configuration and the
/// batch has room; a job of another configuration is `held` for the next batch.
fn take_queued(
    queue: &mut mpsc::UnboundedReceiver<Job>,
    jobs: &mut Vec<Job>,
    events: &mut usize,
    held: &mut Option<Job>,
    batch_events_max: usize,
) {
    while *events < batch_events_max && held.is_none() {
        match queue.try_recv() {
            Ok(job) if Arc::ptr_eq(&job.pipeline, &jobs[0].pipeline) => {
                *events += job.batch.len();
                jobs.push(job);
            }
            Ok(job) => *held = Some(job),
            Err(_) => break,
        }
    }
}

async fn commit(
    store: &dyn Store,
    metrics: &Metrics,
    hooks: &WriterHooks,
    jobs: Vec<Job>,
    events: usize,
    last_group_wake: &mut Option<Instant>,
    last_lag: &mut vakt_store::WriteLag,
) {
    let pipeline = Arc::clone(&jobs[0].pipeline);
    let mut batch = Vec::with_capacity(events);
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.batch.len(), job.answer, job.reply, job.permits));
        batch.extend(job.batch);
    }
    let started = Instant::now();
    let silences = hooks.silences.get();
    let reserved = hooks.handoff.reserve();
    let hand = reserved.hand;
    let result = store
        .ingest_handing(&pipeline, &silences, batch, hand)
        .await;
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.commit_batch_events.observe(events as f64);
    // Before anyone is answered: a sender that reads the metrics next sees its commit.
    if let Some(lag) = store.write_lag() {
        observe_lag(metrics, &lag, last_lag);
        *last_lag = lag;
    }
    match result {
        Ok((outcomes, handed)) => {
            let handed = hooks.handoff.hand(reserved, handed);
            count(metrics, &outcomes);
            (hooks.observer)(&outcomes);
            if wake_dispatch(&outcomes, handed, last_group_wake) {
                hooks.dispatch.notify_one();
            }
            let mut outcomes = outcomes.into_iter();
            // The decisions nobody reads are freed once every sender is answered.
            let mut unread = Vec::new();
            for (len, answer, reply, _permits) in replies {
                let told = match answer {
                    Answer::Outcomes => outcomes.by_ref().take(len).collect(),
                    Answer::Stored => {
                        unread.extend(outcomes.by_ref().take(len));
                        Vec::new()
                    }
                };
                // A sender that went away (client disconnected) still has its events stored.
                let _ = reply.send(Ok(told));
            }
            drop(unread);
        }
        Err(error) => {
            tracing::error!(%error, events, "ingest commit failed; senders get an error and nothing of the batch is stored");
            let error = Arc::new(error);
            for (_, _, reply, _permits) in replies {
                let _ = reply.send(Err(Arc::clone(&error)));
            }
        }
    }
}

/// The write path's lag as metrics: the backlog now, the waits since `last` added.
fn observe_lag(metrics: &Metrics, lag: &vakt_store::WriteLag, last: &vakt_store::WriteLag) {
    // The store counts since it opened; the counters take what was added since `last`.
    let added =
        |counter: &Counter, now: u64, before: u64| counter.inc_by(now.saturating_sub(before));
    metrics
        .journal_behind_bytes
        .set(i64::try_from(lag.behind_bytes).unwrap_or(i64::MAX));
    metrics
        .journal_behind_max_bytes
        .set(i64::try_from(lag.behind_max_bytes).unwrap_or(i64::MAX));
    added(&metrics.journal_waits, lag.waits, last.waits);
    metrics
        .journal_wait_seconds
        .inc_by((lag.waited_secs - last.waited_secs).max(0.0));
    // One sync a commit; were there several since `last`, each counts their average.
    let syncs = lag.syncs.saturating_sub(last.syncs);
    if syncs > 0 {
        let each = (lag.synced_secs - last.synced_secs).max(0.0) / syncs as f64;
        for _ in 0..syncs {
            metrics.journal_sync_seconds.observe(each);
        }
    }
    added(&metrics.journal_hurried, lag.hurried, last.hurried);
    added(
        &metrics.journal_background_applies,
        lag.background_applies,
        last.background_applies,
    );
    added(
        &metrics.journal_background_stops,
        lag.background_stops,
        last.background_stops,
    );
}

/// How often grouped notifications alone wake the dispatcher: a group waits seconds anyway,
/// and a dispatch round after every commit reads the database for nothing.
const GROUP_WAKE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether a commit's outcomes want the dispatcher now: an ungrouped action to run that
/// was not handed to it (`handed` of them were), or grouped ones when the last such wake is
/// a while ago.
fn wake_dispatch(
    outcomes: &[Correlated],
    handed: usize,
    last_group_wake: &mut Option<Instant>,
) -> bool {
    let decided = || {
        outcomes
            .iter()
            .flat_map(|o| &o.actions)
            .filter(|a| a.suppressed_by.is_none())
    };
    if decided().filter(|a| a.group_key.is_none()).count() > handed {
        return true;
    }
    if decided().next().is_some()
        && last_group_wake.is_none_or(|at| at.elapsed() >= GROUP_WAKE_EVERY)
    {
        *last_group_wake = Some(Instant::now());
        return true;
    }
    false
}

fn count(metrics: &Metrics, outcomes: &[Correlated]) {
    for outcome in outcomes {
        if outcome.transition == vakt_core::pipeline::Transition::Duplicate {
            metrics.events_duplicate.inc();
            continue;
        }
        metrics
            .events_stored
            .get_or_create(&CategoryLabels {
                category: outcome.record.category.as_str(),
            })
            .inc();
        if outcome.record.dropped {
            metrics.events_dropped.inc();
        }
        metrics
            .alert_transitions
            .get_or_create(&TransitionLabels {
                transition: outcome.transition.as_str(),
            })
            .inc();
        metrics.actions_decided.inc_by(outcome.actions.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use vakt_core::{EventInput, Pipeline, PipelineConfig};

    use super::*;

    /// After a commit that served several senders, the writer lets the tasks that are ready
    /// run before it commits: a sender about to queue its events joins the batch instead of
    /// waiting for a sync of its own. A lone sender is committed alone, at once.
    #[tokio::test(flavor = "current_thread")]
    async fn a_writer_serving_several_senders_lets_ready_ones_join_the_batch() {
        let dir = tempfile::tempdir().expect("dir");
        let store = vakt_store::open(&vakt_store::Location::SqliteDir(dir.path().into()))
            .await
            .expect("open");
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&batches);
        let (_publisher, live) = crate::live::live(crate::actions::testing::handling(""));
        let (handoff, _inbox) = crate::actions::handoff(live);
        let hooks = WriterHooks {
            observer: Box::new(move |outcomes| {
                seen.lock().expect("not poisoned").push(outcomes.len());
            }),
            silences: Arc::new(
                crate::silences::SilenceBoard::build(Arc::clone(&store))
                    .await
                    .expect("silences"),
            ),
            dispatch: Arc::new(tokio::sync::Notify::new()),
            handoff,
        };
        let (ingest, writer) = Ingest::start(store, Arc::new(Metrics::new()), 100, 100, hooks);
        let channel = ingest.channel("test", 100);
        let pipeline = Arc::new(
            Pipeline::build(&PipelineConfig::from_toml("").expect("config")).expect("pipeline"),
        );
        let event = |resource: &str| EventInput {
            resource: resource.into(),
            check: "disk".into(),
            summary: "full".into(),
            ..EventInput::default()
        };
        let send = |resource: &str| {
            let input = event(resource);
            deliver(
                &channel,
                Arc::clone(&pipeline),
                vec![input],
                WhenFull::Refuse,
                Answer::Stored,
            )
        };
        let committed = |receipt: Result<Receipt, SubmitError>| async {
            receipt.expect("queued").committed().await.expect("stored")
        };
        // A lone sender: committed alone.
        // A sender that asked only whether its events are stored gets no decisions back.
        assert!(committed(send("a").await).await.is_empty());
        // Two senders queued together: one commit.
        let (b, c) = (send("b").await, send("c").await);
        committed(b).await;
        committed(c).await;
        // The writer is woken for "d" before the task that sends "e" runs (this runtime runs
        // tasks in the order they were woken): "e" joins "d"'s batch only because the
        // writer, having just served two senders, lets it run first.
        let d = send("d").await;
        let e = {
            let channel = channel.clone();
            let pipeline = Arc::clone(&pipeline);
            let input = event("e");
            tokio::spawn(async move {
                deliver(
                    &channel,
                    pipeline,
                    vec![input],
                    WhenFull::Refuse,
                    Answer::Stored,
                )
                .await
                .expect("queued")
                .committed()
                .await
                .expect("stored")
            })
        };
        committed(d).await;
        e.await.expect("sender");
        assert_eq!(*batches.lock().expect("not poisoned"), [1, 2, 2]);
        // One that asked for them (the events API) gets each event's.
        let told = deliver(
            &channel,
            Arc::clone(&pipeline),
            vec![event("f"), event("g")],
            WhenFull::Refuse,
            Answer::Outcomes,
        )
        .await
        .expect("queued")
        .committed()
        .await
        .expect("stored");
        let resources: Vec<&str> = told
            .iter()
            .map(|o| o.record.event.resource.as_str())
            .collect();
        assert_eq!(resources, ["f", "g"]);
        drop((channel, ingest));
        writer
            .await
            .expect("the writer ends when the senders are gone");
    }
}
