//! A live view of a component's compiled configuration: the assembler publishes the new
//! value on reload, the component reads the one in force when it needs it.
//!
//! Components never see the whole configuration file, only the part they compiled (the
//! pipeline, the handling stage, the directory, their own section), so a component depends
//! on its own types and not on `config`.

use std::sync::Arc;

use tokio::sync::watch;

/// The value in force; cheap to clone, never blocks.
pub struct Live<T>(watch::Receiver<Arc<T>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    /// The value in force now.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.0.borrow())
    }
}

/// Publishes new values to every `Live` made from it.
pub struct Publisher<T>(watch::Sender<Arc<T>>);

impl<T> Publisher<T> {
    pub fn publish(&self, value: T) {
        self.publish_shared(Arc::new(value));
    }

    /// Publishes a value already shared (a compiled pipeline, say).
    pub fn publish_shared(&self, value: Arc<T>) {
        self.0.send_replace(value);
    }

    /// Another view of the value.
    pub fn subscribe(&self) -> Live<T> {
        Live(self.0.subscribe())
    }
}

/// A value and the publisher that replaces it.
pub fn live<T>(initial: T) -> (Publisher<T>, Live<T>) {
    live_shared(Arc::new(initial))
}

/// `live` for a value already shared.
pub fn live_shared<T>(initial: Arc<T>) -> (Publisher<T>, Live<T>) {
    let (tx, rx) = watch::channel(initial);
    (Publisher(tx), Live(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_value_is_seen_by_every_view() {
        let (publisher, first) = live(1);
        let second = publisher.subscribe();
        publisher.publish(2);
        assert_eq!((*first.get(), *second.get()), (2, 2));
        // A view outlives its publisher with the last value.
        drop(publisher);
        assert_eq!(*first.get(), 2);
    }
}
