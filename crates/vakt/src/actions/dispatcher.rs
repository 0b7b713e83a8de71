//! The dispatcher: claims due actions with a lease, runs them within the concurrency limits,
//! and hands every attempt to the finisher, which records them in batches.

use super::*;

/// Tries to record a batch of attempts before giving up (their leases then run out and the
/// actions are taken back), and the wait that grows between tries.
const FINISH_ATTEMPTS: u64 = 5;
const FINISH_BACKOFF: Duration = Duration::from_millis(200);
/// The shortest poll interval, whatever `dispatch.poll_interval_ms` says.
const POLL_MIN_MS: u64 = 10;

/// The dispatcher's shared parts.
pub struct Dispatcher {
    pub(super) deps: Deps,
    pub(super) wake: Arc<Notify>,
    pub(super) client: reqwest::Client,
    pub(super) running: Arc<Semaphore>,
    pub(super) per_action: Mutex<HashMap<String, Arc<Semaphore>>>,
    pub(super) throttles: Mutex<Throttles>,
    pub(super) finisher: tokio::sync::mpsc::Sender<Finished>,
    /// When abandoned leases were last looked for (a write transaction: not every round).
    pub(super) recovered_at: Mutex<Option<Instant>>,
    /// The last round stopped claiming for want of free slots: a slot freed by handed work
    /// wakes the dispatcher (otherwise handed work finishing wakes nobody).
    pub(super) starved: std::sync::atomic::AtomicBool,
}

/// Attempts to store together (one action's, or every member of a claim's group messages),
/// and who waits for them.
pub(super) type Finished = (
    Vec<(ActionRecord, Finish)>,
    tokio::sync::oneshot::Sender<()>,
);

/// Attempts the finisher gathers from several senders before it writes, at most (one
/// sender's attempts, a claim's group members, go in whole).
pub(super) const FINISH_BATCH_MAX: usize = 512;
/// Attempts one finishing transaction stores, at most: what was gathered is written in id
/// order, this many at a time (a transaction holds the database's one writer, on SQLite,
/// or the members' rows while it runs).
const FINISH_TX_MAX: usize = 2_048;
/// `FINISH_TX_MAX` where claims are held in memory (SQLite): each finishing transaction
/// waits behind one of the journal's applier's, so a burst's group messages were recorded
/// a transaction of 2,048 at a time, each after one of those, before the next claim
/// (`CLAIM_MEMBERS_BUDGET_HELD`).
const FINISH_TX_MAX_HELD: usize = 8_192;

/// Commits finished attempts in batches: one transaction (one fsync on SQLite) for all the
/// attempts that ended while the previous one committed, in the order of their actions' ids
/// (the rows of actions decided together lie together).
pub(super) async fn finisher(
    store: Arc<dyn Store>,
    mut queue: tokio::sync::mpsc::Receiver<Finished>,
) {
    let tx_max = if store.capabilities().single_process {
        FINISH_TX_MAX_HELD
    } else {
        FINISH_TX_MAX
    };
    while let Some((first, done)) = queue.recv().await {
        let mut items = first;
        let mut waiting = vec![done];
        while items.len() < FINISH_BATCH_MAX {
            match queue.try_recv() {
                Ok((more, done)) => {
                    items.extend(more);
                    waiting.push(done);
                }
                Err(_) => break,
            }
        }
        items.sort_unstable_by(|(a, _), (b, _)| a.decided.id.cmp(&b.decided.id));
        for chunk in items.chunks(tx_max) {
            // The store is the record: retry the write a few times before giving up on it.
            let mut stored = false;
            for attempt in 1..=FINISH_ATTEMPTS {
                match store.finish_actions(chunk).await {
                    Ok(()) => {
                        stored = true;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt, attempts = chunk.len(), "cannot record action attempts");
                        tokio::time::sleep(FINISH_BACKOFF * u32::try_from(attempt).unwrap_or(1))
                            .await;
                    }
                }
            }
            if !stored {
                tracing::error!(
                    attempts = chunk.len(),
                    "gave up recording attempts; their leases will run out and they will be taken back"
                );
            }
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// What the dispatcher needs from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// The handling stage's configuration in force (reload publishes a new one).
    pub handling: Live<HandlingConfig>,
    /// Woken when there is due work (a commit decided actions, an operator retried one).
    pub wake: Arc<Notify>,
}

impl Deps {
    pub(super) fn handling(&self) -> Arc<HandlingConfig> {
        self.handling.get()
    }
}

/// On a store with one dispatching process (SQLite), takes back every action left
/// `running`: it belonged to a process that is gone, whatever its lease says. Called at
/// start before anything can ingest: an action the writer hands to the dispatcher is
/// `running` too, and taken back as well it would be sent twice.
pub async fn recover_at_start(store: &dyn Store) {
    if !store.capabilities().single_process {
        return;
    }
    match store
        .recover_actions(chrono::DateTime::<Utc>::MAX_UTC, Utc::now())
        .await
    {
        Ok(recovered) if !recovered.is_empty() => tracing::warn!(
            actions = recovered.len(),
            "took back actions that were running when vakt stopped"
        ),
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "cannot take back interrupted actions"),
    }
}

/// Starts the dispatcher; it stops taking work when `stop` turns true and ends once the
/// attempts it started have finished.
pub fn spawn(
    deps: Deps,
    inbox: Inbox,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let wake = Arc::clone(&deps.wake);
    let Inbox {
        running,
        handed: mut inbox,
    } = inbox;
    let concurrency = running.available_permits();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap_or_default();
    let (finished, queue) = tokio::sync::mpsc::channel(FINISH_BATCH_MAX * 2);
    tokio::spawn(finisher(Arc::clone(&deps.store), queue));
    let dispatcher = Arc::new(Dispatcher {
        deps,
        wake,
        client,
        running,
        per_action: Mutex::new(HashMap::new()),
        throttles: Mutex::new(Throttles::default()),
        finisher: finished,
        recovered_at: Mutex::new(None),
        starved: std::sync::atomic::AtomicBool::new(false),
    });
    // Handed work starts as it comes, in a task of its own: a round may wait for the
    // database (on SQLite, for the journal's applier) and must not hold it up.
    let handed = {
        let dispatcher = Arc::clone(&dispatcher);
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tokio::pin!(closed);
            loop {
                tokio::select! {
                    item = inbox.recv() => match item {
                        Some((work, permit)) => {
                            dispatcher.start_handed(&dispatcher.deps.handling(), work, permit);
                        }
                        None => break,
                    },
                    _ = &mut closed => {
                        // Stopping: run what is already here, take no more.
                        inbox.close();
                        while let Some((work, permit)) = inbox.recv().await {
                            dispatcher.start_handed(&dispatcher.deps.handling(), work, permit);
                        }
                        break;
                    }
                }
            }
        });
        (close, task)
    };
    tokio::spawn(async move {
        let (close_inbox, handed) = handed;
        // Throttle windows outlive a restart: a storm stays throttled.
        match dispatcher.deps.store.throttles().await {
            Ok(stored) => {
                let restored = dispatcher
                    .throttles
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .restore(stored);
                if restored > 0 {
                    tracing::info!(windows = restored, "throttle windows restored");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the stored throttle windows"),
        }
        loop {
            if *stop.borrow() {
                break;
            }
            let handling = dispatcher.deps.handling();
            let mut wait =
                Duration::from_millis(handling.dispatch.poll_interval_ms.max(POLL_MIN_MS));
            if handling.dispatch.enabled {
                match dispatcher.round(&handling).await {
                    // A group comes due before the next poll: wake for it.
                    Ok(Some(next)) => {
                        let until = (next - Utc::now()).to_std().unwrap_or_default();
                        wait = wait.min(until.max(Duration::from_millis(POLL_MIN_MS)));
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "dispatch round failed; trying again"),
                }
            }
            tokio::select! {
                _ = dispatcher.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        // Handed work already holds its claim: what came before the stop still runs.
        let _ = close_inbox.send(());
        let _ = handed.await;
        // Let running attempts finish (bounded by their timeouts): they hold permits.
        let _ = dispatcher
            .running
            .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
            .await;
    })
}

impl Dispatcher {
    /// One pass: take back abandoned actions, start due ones, send due groups, summaries.
    /// Returns when the next group not yet due will be.
    pub(super) async fn round(
        self: &Arc<Self>,
        handling: &Arc<HandlingConfig>,
    ) -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
        let store = Arc::clone(&self.deps.store);
        // Leases run for many seconds, so looking for abandoned ones once a poll interval is
        // soon enough; rounds woken by new work (many a second under load) skip it, and the
        // claim behind it does not queue for the writer twice.
        let poll = Duration::from_millis(handling.dispatch.poll_interval_ms.max(POLL_MIN_MS));
        let recover = {
            let mut at = self
                .recovered_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = at.is_none_or(|at| at.elapsed() >= poll);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if recover {
            let now = Utc::now();
            let recovered = store.recover_actions(now, now).await?;
            if !recovered.is_empty() {
                tracing::warn!(
                    actions = recovered.len(),
                    "took back actions whose dispatcher stopped mid-attempt"
                );
            }
        }
        // Claim in batches: a claim is a write transaction, so claiming one action each time
        // one finishes would spend a commit per action. Wait for a quarter of the slots.
        let concurrency = handling.dispatch.concurrency.max(1);
        loop {
            let free = self.running.available_permits();
            if !worth_claiming(free, concurrency) {
                self.starved
                    .store(true, std::sync::atomic::Ordering::Release);
                break;
            }
            let now = Utc::now();
            // The lease outlasts the longest attempt: the action's timeout plus a margin.
            let lease_until = now + chrono::Duration::seconds(lease_secs(handling));
            let claimed = store
                .claim_actions(now, lease_until, u32::try_from(free).unwrap_or(u32::MAX))
                .await?;
            if claimed.is_empty() {
                self.starved
                    .store(false, std::sync::atomic::Ordering::Release);
                break;
            }
            for record in claimed {
                let Ok(permit) = Arc::clone(&self.running).acquire_owned().await else {
                    return Ok(None);
                };
                let this = Arc::clone(self);
                let handling = Arc::clone(handling);
                tokio::spawn(async move {
                    this.run_one(&handling, record).await;
                    drop(permit);
                    // Room for another: look for due work now, not at the next poll.
                    this.wake.notify_one();
                });
            }
        }
        let next_group = self.send_groups(handling).await?;
        self.send_summaries(handling).await;
        self.store_throttles().await;
        Ok(next_group)
    }

    pub(super) async fn run_one(&self, handling: &HandlingConfig, record: ActionRecord) {
        self.run_loaded(handling, record, None).await;
    }

    /// Runs a claimed action (with its alert, when the caller has it) and records the attempt.
    pub(super) async fn run_loaded(
        &self,
        handling: &HandlingConfig,
        record: ActionRecord,
        loaded: Option<attempt::Loaded>,
    ) {
        let started = Utc::now();
        let result = self.attempt(handling, &record, loaded).await;
        let finished = Utc::now();
        let finish = retry::finish(handling, &record, result, started, finished);
        self.store_throttles().await;
        self.record(vec![(record, finish)]).await;
    }

    /// Records attempts: counted in metrics, then committed by the finisher (several
    /// dispatch tasks' attempts share one transaction); returns once they are stored.
    pub(super) async fn record(&self, items: Vec<(ActionRecord, Finish)>) {
        if items.is_empty() {
            return;
        }
        let metrics = &self.deps.metrics;
        for (record, finish) in &items {
            metrics
                .action_attempts
                .get_or_create(&crate::metrics::AttemptLabels {
                    kind: record.decided.kind,
                    outcome: match &finish.next {
                        Next::Done(ActionStatus::Succeeded) => "succeeded",
                        Next::Done(ActionStatus::Skipped) => "skipped",
                        Next::Retry(_) => "retry",
                        Next::Done(_) => "failed",
                    },
                })
                .inc();
            if let Next::Done(ActionStatus::Succeeded) = finish.next {
                let latency = (finish.attempt.finished_at - record.decided.decided_at)
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0;
                metrics.action_latency_seconds.observe(latency);
            }
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.finisher.send((items, done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Whether `free` of `concurrency` slots are worth a claim: a claim is a write transaction,
/// so the dispatcher waits for a quarter of its slots (or all of a small pool) to be free.
fn worth_claiming(free: usize, concurrency: usize) -> bool {
    let batch_min = (concurrency / 4).max(1);
    free > 0 && (free >= batch_min || free >= concurrency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_wait_for_a_quarter_of_the_slots() {
        assert!(!worth_claiming(0, 32));
        assert!(!worth_claiming(7, 32), "fewer than 8 of 32 free");
        assert!(worth_claiming(8, 32));
        assert!(worth_claiming(1, 1), "a pool of one claims one");
        assert!(worth_claiming(1, 3), "a small pool claims what it can");
    }
}
