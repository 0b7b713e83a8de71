//! Actions handed from the ingest writer to the dispatcher in memory.
//!
//! A batch's due deliveries and commands for the alerts it opens can be claimed in the
//! durable write that stores them (`Store::ingest_handing`): the writer reserves dispatch
//! slots first, the store marks that many actions `running` with a lease in the same record
//! the `202` waits for, and the writer passes them here with their alert and event. The
//! dispatcher runs them at once, without reading them back from the tables (on SQLite that
//! read would wait for the journal's applier). Only the outcome is written, as for any
//! claimed action; a crash before it leaves a lease the next start takes back.

use super::*;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use vakt_store::{HandOff, Handed};

/// Most actions one batch hands over; the rest are claimed from the table.
const HAND_MAX: usize = 64;

/// The writer's side.
pub struct Handoff {
    running: Arc<Semaphore>,
    inbox: mpsc::UnboundedSender<(Handed, OwnedSemaphorePermit)>,
    handling: Live<HandlingConfig>,
}

/// The dispatcher's side: its slots and what was handed to it.
pub struct Inbox {
    pub(super) running: Arc<Semaphore>,
    pub(super) handed: mpsc::UnboundedReceiver<(Handed, OwnedSemaphorePermit)>,
}

/// Dispatch slots held for a batch about to be stored, and the hand-off they allow.
pub struct Reserved {
    permits: Vec<OwnedSemaphorePermit>,
    pub hand: HandOff,
}

/// The two sides; the dispatcher's slots are `dispatch.concurrency` as configured at start.
pub fn handoff(handling: Live<HandlingConfig>) -> (Handoff, Inbox) {
    let running = Arc::new(Semaphore::new(handling.get().dispatch.concurrency.max(1)));
    // Unbounded in type only: every item holds one of `running`'s permits.
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Handoff {
            running: Arc::clone(&running),
            inbox: tx,
            handling,
        },
        Inbox {
            running,
            handed: rx,
        },
    )
}

impl Handoff {
    /// Holds the dispatch slots free now (up to `HAND_MAX`) for the next batch's actions.
    /// None while dispatch is off or the dispatcher has stopped.
    pub fn reserve(&self) -> Reserved {
        let handling = self.handling.get();
        let mut permits = Vec::new();
        if handling.dispatch.enabled && !self.inbox.is_closed() {
            let free = self.running.available_permits().min(HAND_MAX);
            while permits.len() < free {
                match Arc::clone(&self.running).try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
        }
        Reserved {
            hand: HandOff {
                max: permits.len(),
                lease_until: Utc::now() + chrono::Duration::seconds(lease_secs(&handling)),
            },
            permits,
        }
    }

    /// Passes what the store claimed to the dispatcher, one reserved slot each; the slots
    /// left over are released. Returns how many were handed.
    pub fn hand(&self, reserved: Reserved, handed: Vec<Handed>) -> usize {
        let count = handed.len();
        let mut permits = reserved.permits.into_iter();
        for item in handed {
            let Some(permit) = permits.next() else {
                // The store never claims more than `hand.max`; should it, the lease runs
                // out and the action is taken back like an abandoned claim.
                tracing::error!(action = %item.record.decided.id, "an action was handed without a dispatch slot");
                continue;
            };
            if self.inbox.send((item, permit)).is_err() {
                // The dispatcher stopped: the lease runs out and the next start takes the
                // action back.
                break;
            }
        }
        count
    }
}

impl Dispatcher {
    /// Runs a handed action with what came with it; its slot is released when it ends.
    pub(super) fn start_handed(
        self: &Arc<Self>,
        handling: &Arc<HandlingConfig>,
        handed: Handed,
        permit: OwnedSemaphorePermit,
    ) {
        let this = Arc::clone(self);
        let handling = Arc::clone(handling);
        tokio::spawn(async move {
            let Handed {
                record,
                alert,
                event,
                earlier,
            } = handed;
            let loaded = attempt::Loaded {
                alert,
                event: Some(event),
                earlier,
            };
            this.run_loaded(&handling, record, Some(loaded)).await;
            drop(permit);
            if this
                .starved
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                this.wake.notify_one();
            }
        });
    }
}
