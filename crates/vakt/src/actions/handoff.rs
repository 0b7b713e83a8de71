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

/// Dispatch slots held for a batch about to be stored, and the hand-off they allow: one
/// permit of `hand.max` slots, split per handed action (taking and giving back 64 slots
/// one by one, for every single-alert batch, was 0.8% of the server's CPU in row 1 of the
/// Alertmanager comparison).
pub struct Reserved {
    slots: Option<OwnedSemaphorePermit>,
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
        let mut slots = None;
        if handling.dispatch.enabled && !self.inbox.is_closed() {
            let free = self.running.available_permits().min(HAND_MAX);
            // Slots taken meanwhile by the dispatcher: none this batch (its actions are
            // claimed from the table, as beyond `HAND_MAX`).
            slots = u32::try_from(free)
                .ok()
                .filter(|&n| n > 0)
                .and_then(|n| Arc::clone(&self.running).try_acquire_many_owned(n).ok());
        }
        Reserved {
            hand: HandOff {
                max: slots.as_ref().map_or(0, OwnedSemaphorePermit::num_permits),
                lease_until: Utc::now() + chrono::Duration::seconds(lease_secs(&handling)),
            },
            slots,
        }
    }

    /// Passes what the store claimed to the dispatcher, one reserved slot each; the slots
    /// left over are released. Returns how many were handed.
    pub fn hand(&self, reserved: Reserved, handed: Vec<Handed>) -> usize {
        let count = handed.len();
        let mut slots = reserved.slots;
        for item in handed {
            let Some(permit) = slots.as_mut().and_then(|slots| slots.split(1)) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch holds the free slots (up to `HAND_MAX`) as one permit, and what it did not
    /// hand goes back at once; a slot the dispatcher holds is not offered.
    #[tokio::test]
    async fn a_batch_holds_the_free_slots_and_gives_back_what_it_did_not_hand() {
        let (_publisher, live) = crate::live::live(super::super::testing::handling(
            "[dispatch]\nconcurrency = 3\n",
        ));
        let (writer, inbox) = handoff(live);
        let reserved = writer.reserve();
        assert_eq!(reserved.hand.max, 3);
        assert_eq!(inbox.running.available_permits(), 0, "held for the batch");
        assert_eq!(writer.hand(reserved, Vec::new()), 0);
        assert_eq!(inbox.running.available_permits(), 3, "given back");
        let busy = Arc::clone(&inbox.running)
            .try_acquire_owned()
            .expect("a slot");
        let reserved = writer.reserve();
        assert_eq!(reserved.hand.max, 2);
        drop(reserved);
        drop(busy);
        assert_eq!(inbox.running.available_permits(), 3);
        let (_publisher, live) = crate::live::live(super::super::testing::handling(
            "[dispatch]\nconcurrency = 200\n",
        ));
        let (writer, _inbox) = handoff(live);
        assert_eq!(writer.reserve().hand.max, HAND_MAX);
    }
}
